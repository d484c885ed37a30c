package netproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// guardRules is the desired content of the node's nftables table, as data:
// the chains and, per chain, the rules with the comment that identifies
// each, and the set of served portal ports. Sync compares the comments
// with the kernel's to leave an unchanged table alone, and otherwise
// replaces the whole table in one atomic batch; the set's elements are
// brought up to date in one batch of their own.
type guardRules struct {
	table  *nftables.Table
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule // by chain name
	ports  *nftables.Set               // portalPortsSet
}

// portalPortsSet holds "portal address . protocol . port" for every
// service port: what may be reached in the portal range.
const portalPortsSet = "portal_ports"

// portalPortsKey is the set's key type. Concatenated keys pad each part to
// 4 bytes (the kernel's 32-bit registers).
var portalPortsKey = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)

// portalPortKey is a set element's key: address, protocol and port, each
// padded to 4 bytes.
func portalPortKey(addr netip.Addr, proto byte, port uint16) []byte {
	a := addr.As4()
	return []byte{a[0], a[1], a[2], a[3], proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

// portalPortElements are the set elements for the portals' ports.
func portalPortElements(portals []Portal) []nftables.SetElement {
	var out []nftables.SetElement
	seen := map[string]bool{}
	for _, p := range portals {
		for _, pp := range p.Ports {
			proto := byte(unix.IPPROTO_TCP)
			if pp.Protocol == "UDP" {
				proto = unix.IPPROTO_UDP
			}
			k := portalPortKey(p.Addr, proto, pp.Port)
			if !seen[string(k)] {
				seen[string(k)] = true
				out = append(out, nftables.SetElement{Key: k})
			}
		}
	}
	slices.SortFunc(out, func(a, b nftables.SetElement) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

// ifname is a NUL-padded interface name as meta oifname loads it.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// buildGuard returns the rules that keep the portal range on the node:
// anything addressed to it that would be forwarded (from a pod or from
// another host) or sent out of an interface other than lo (from the node
// itself) is rejected: TCP with a reset, everything else with ICMP port
// unreachable. With the local route in place nothing ever matches; the
// rules are the safety net for the moments without it (agent start, a
// route removed by hand) and show in their counters if they ever fire.
//
// The input chain refuses new TCP connections and UDP flows to the range
// that are not for a service port (the set portal_ports): the local route
// delivers the whole range to the node's own stack, where a program
// listening on 0.0.0.0 (sshd, a DNS server, anything) would otherwise
// answer on every address of the range. kube-proxy's IPVS mode, whose
// ClusterIPs are local addresses too, rejects the same traffic. Replies
// (a host client connects from the portal address to itself) are not new
// and pass.
func buildGuard(tableName string, cidr netip.Prefix) guardRules {
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	accept := nftables.ChainPolicyAccept
	forward := &nftables.Chain{
		Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	}
	output := &nftables.Chain{
		Name: "output", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	}
	input := &nftables.Chain{
		Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	}
	ports := &nftables.Set{
		Table: table, Name: portalPortsSet, KeyType: portalPortsKey, Concatenation: true,
	}

	cidr = cidr.Masked()
	mask := netipMask4(cidr.Bits())
	network := cidr.Addr().As4()
	daddrInRange := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
	}
	notLoopback := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")},
	}
	isTCP := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	isUDP := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
	}
	ctNew := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	// daddr . l4proto . dport into the 32-bit registers 0-2, looked up
	// in the set; the rule goes on when the key is not there.
	notAServicePort := []expr.Any{
		&expr.Payload{DestRegister: unix.NFT_REG32_00, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_01},
		&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: ports.Name, SetID: ports.ID, Invert: true},
	}
	resetTCP := &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}
	portUnreachable := &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* ICMP_PORT_UNREACH */}

	rule := func(chain *nftables.Chain, comment string, parts ...[]expr.Any) *nftables.Rule {
		var exprs []expr.Any
		for _, p := range parts {
			exprs = append(exprs, p...)
		}
		return &nftables.Rule{
			Table: table, Chain: chain, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
		}
	}
	counterAnd := func(e expr.Any) []expr.Any { return []expr.Any{&expr.Counter{}, e} }
	tag := "cuelet: portal range " + cidr.String() + " stays on the node"
	return guardRules{
		table:  table,
		chains: []*nftables.Chain{forward, output, input},
		ports:  ports,
		rules: map[string][]*nftables.Rule{
			"input": {
				rule(input, tag+" (no service, tcp)", daddrInRange, isTCP, ctNew, notAServicePort, counterAnd(resetTCP)),
				rule(input, tag+" (no service, udp)", daddrInRange, isUDP, ctNew, notAServicePort, counterAnd(portUnreachable)),
			},
			"forward": {
				rule(forward, tag+" (forwarded tcp)", daddrInRange, isTCP, counterAnd(resetTCP)),
				rule(forward, tag+" (forwarded)", daddrInRange, counterAnd(portUnreachable)),
			},
			"output": {
				rule(output, tag+" (sent out tcp)", daddrInRange, notLoopback, isTCP, counterAnd(resetTCP)),
				rule(output, tag+" (sent out)", daddrInRange, notLoopback, counterAnd(portUnreachable)),
			},
		},
	}
}

func netipMask4(bits int) [4]byte {
	var m [4]byte
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// comments returns the rule comments per chain, which identify the rules.
func (g guardRules) comments() map[string][]string {
	out := map[string][]string{}
	for chain, rules := range g.rules {
		for _, r := range rules {
			c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			out[chain] = append(out[chain], c)
		}
	}
	return out
}

// syncGuard makes the kernel's guard chains and set equal to g, with
// elems in the set of portal ports. It reports whether it had to rewrite
// them. Other chains and sets of the table are left alone: the kernel
// data path (netproxy/kernel) keeps its rules in the same table.
func syncGuard(conn *nftables.Conn, g guardRules, elems []nftables.SetElement) (bool, error) {
	if guardInPlace(conn, g) {
		return false, syncPortalPorts(conn, g, elems)
	}
	// One transaction: add what is missing (a no-op for what exists),
	// flush the guard's chains, replace the set (its rules are gone by
	// then), add the rules. The old rules are replaced without a moment
	// without rules, and nothing else of the table is touched.
	conn.AddTable(g.table)
	for _, c := range g.chains {
		conn.AddChain(c)
		conn.FlushChain(c)
	}
	if err := conn.AddSet(g.ports, nil); err != nil {
		return false, fmt.Errorf("nftables set %s: %w", g.ports.Name, err)
	}
	conn.DelSet(g.ports)
	if err := conn.AddSet(g.ports, elems); err != nil {
		return false, fmt.Errorf("nftables set %s: %w", g.ports.Name, err)
	}
	for _, c := range g.chains {
		for _, r := range g.rules[c.Name] {
			conn.AddRule(r)
		}
	}
	if err := conn.Flush(); err != nil {
		return false, fmt.Errorf("replace nftables guard in table %s: %w", g.table.Name, err)
	}
	return true, nil
}

// syncPortalPorts adds and removes set elements so that the set holds
// exactly elems, in one batch.
func syncPortalPorts(conn *nftables.Conn, g guardRules, elems []nftables.SetElement) error {
	have, err := conn.GetSetElements(g.ports)
	if err != nil {
		return fmt.Errorf("list nftables set %s: %w", g.ports.Name, err)
	}
	want := map[string]bool{}
	for _, e := range elems {
		want[string(e.Key)] = true
	}
	var add, del []nftables.SetElement
	for _, e := range have {
		if !want[string(e.Key)] {
			del = append(del, nftables.SetElement{Key: e.Key})
		}
		delete(want, string(e.Key))
	}
	for _, e := range elems {
		if want[string(e.Key)] {
			add = append(add, e)
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	if len(del) > 0 {
		if err := conn.SetDeleteElements(g.ports, del); err != nil {
			return fmt.Errorf("nftables set %s: %w", g.ports.Name, err)
		}
	}
	if len(add) > 0 {
		if err := conn.SetAddElements(g.ports, add); err != nil {
			return fmt.Errorf("nftables set %s: %w", g.ports.Name, err)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("update nftables set %s: %w", g.ports.Name, err)
	}
	return nil
}

func guardInPlace(conn *nftables.Conn, g guardRules) bool {
	if set, err := conn.GetSetByName(g.table, g.ports.Name); err != nil || set == nil || set.KeyType.Bytes != g.ports.KeyType.Bytes {
		return false
	}
	chains, err := conn.ListChainsOfTableFamily(g.table.Family)
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for _, c := range chains {
		if c.Table.Name == g.table.Name {
			have[c.Name] = true
		}
	}
	for _, c := range g.chains {
		if !have[c.Name] {
			return false
		}
	}
	wantComments := g.comments()
	for _, c := range g.chains {
		rules, err := conn.GetRules(g.table, c)
		if err != nil {
			return false
		}
		var got []string
		for _, r := range rules {
			s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			got = append(got, s)
		}
		if !slices.Equal(got, wantComments[c.Name]) {
			return false
		}
	}
	return true
}

// deleteGuard removes the table; a missing table is not an error.
func deleteGuard(conn *nftables.Conn, tableName string) error {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == tableName {
			conn.DelTable(t)
			if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete nftables table %s: %w", tableName, err)
			}
		}
	}
	return nil
}

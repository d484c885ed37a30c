package netproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// guardRules is the desired content of the node's nftables table, as data:
// the chains and, per chain, the rules with the comment that identifies
// each. Sync compares these comments with the kernel's to leave an
// unchanged table alone, and otherwise replaces the whole table in one
// atomic batch.
type guardRules struct {
	table  *nftables.Table
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule // by chain name
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
		chains: []*nftables.Chain{forward, output},
		rules: map[string][]*nftables.Rule{
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

// syncGuard makes the kernel's table equal to g. It reports whether it
// had to write.
func syncGuard(conn *nftables.Conn, g guardRules) (bool, error) {
	if guardInPlace(conn, g) {
		return false, nil
	}
	// Add (a no-op when it exists), delete, add: the delete never fails
	// for a missing table, and the whole batch is one transaction, so the
	// old rules are replaced without a moment without rules.
	conn.AddTable(g.table)
	conn.DelTable(g.table)
	conn.AddTable(g.table)
	for _, c := range g.chains {
		conn.AddChain(c)
		for _, r := range g.rules[c.Name] {
			conn.AddRule(r)
		}
	}
	if err := conn.Flush(); err != nil {
		return false, fmt.Errorf("replace nftables table %s: %w", g.table.Name, err)
	}
	return true, nil
}

func guardInPlace(conn *nftables.Conn, g guardRules) bool {
	chains, err := conn.ListChainsOfTableFamily(g.table.Family)
	if err != nil {
		return false
	}
	var have []string
	for _, c := range chains {
		if c.Table.Name == g.table.Name {
			have = append(have, c.Name)
		}
	}
	want := make([]string, 0, len(g.chains))
	for _, c := range g.chains {
		want = append(want, c.Name)
	}
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		return false
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

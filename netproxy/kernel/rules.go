package kernel

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/netproxy"
)

// Names of the fixed objects of the kernel data path in the agent's table.
// Every object of this package has a name starting with "svc" (fixed
// objects, service chains, counters), "ep-" (endpoint chains) or "aff-"
// (affinity sets), so that it can tell its objects from the guard's
// (chains forward, output, input; set portal_ports), which netproxy.Node
// keeps in the same table.
const (
	chainPrerouting  = "svc_prerouting"
	chainOutput      = "svc_output"
	chainPostrouting = "svc_postrouting"
	chainInput       = "svc_input"
	chainServices    = "svc_services"

	mapServiceIPs    = "svc_ips"           // portal (or ExternalAddress) . proto . port : goto service chain
	mapExternal      = "svc_external"      // proto . port : goto service chain, on every local address
	setNoEndpoints   = "svc_noep"          // portal . proto . port of service ports without endpoints
	setNoEndpointExt = "svc_noep_external" // proto . port of their external ports
	setHairpin       = "svc_hairpin"       // endpoint . endpoint: a client that reached itself
	setEndpoints     = "svc_endpoints"     // endpoint . proto . port of every endpoint
	mapTurns         = "svc_turns"         // service port's slot . turn : endpoint address . port
	mapStickyTurns   = "svc_sticky_turns"  // the same, with affinity: goto the endpoint's chain
)

// owned reports whether a chain, set or counter of the table is the kernel
// data path's.
func owned(name string) bool {
	return strings.HasPrefix(name, "svc") || strings.HasPrefix(name, "ep-") || strings.HasPrefix(name, "aff-")
}

var (
	keyAddrProtoPort = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	keyProtoPort     = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	keyAddrAddr      = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	keySlotTurn      = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark) // 32-bit integers nft can list
)

// slotOf is a service port's slot in svc_turns: a hash of its id, so that
// it stays the same whatever other services come and go (a changed slot
// would rewrite the chain and restart its turns). taken holds the slots
// of the ports before it in name order; a collision takes the next free
// slot.
func slotOf(id string, taken map[uint32]bool) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	slot := h.Sum32()
	for taken[slot] {
		slot++
	}
	taken[slot] = true
	return slot
}

// ruleset is the desired content of the kernel data path, as data: a pure
// function of the services (see build). Every rule carries its nft text,
// which the tests read and which tells a changed chain from an unchanged
// one.
type ruleset struct {
	table    *nftables.Table
	chains   []*chainSpec // fixed chains first, then by name
	sets     []*setSpec   // fixed sets first, then affinity sets by name
	counters []string     // named counters, one per service port
	// ports are the served service ports, for counters, conntrack and
	// route_localnet.
	ports []servedPort
	errs  map[string]error
}

type chainSpec struct {
	name string
	// hook is nil for a regular chain (reached by jump or goto).
	hook  *nftables.ChainHook
	prio  *nftables.ChainPriority
	ctype nftables.ChainType
	rules []rule
}

// text renders the chain's definition and rules, one a line.
func (c *chainSpec) text() string {
	var b strings.Builder
	b.WriteString("chain " + c.name)
	if c.hook != nil {
		fmt.Fprintf(&b, " { type %s hook %s priority %d }", c.ctype, hookName(*c.hook), *c.prio)
	}
	for _, r := range c.rules {
		b.WriteString("\n\t" + r.text)
	}
	return b.String()
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(h)
}

type rule struct {
	text  string
	exprs []expr.Any
}

type setSpec struct {
	set   *nftables.Set
	elems []nftables.SetElement
	// text renders the elements, sorted: equal text, equal set.
	text []string
	// sticky sets (ClientIP affinity) are filled by the data path, never
	// flushed; a changed timeout is a set of another name.
	sticky bool
}

// servedPort is a service port with the addresses and endpoints it has.
type servedPort struct {
	service, label, protocol string
	proto                    byte
	portal                   netip.AddrPort   // invalid when another service owns it
	external                 netip.AddrPort   // invalid when none
	endpoints                []netip.AddrPort // ready, deduplicated, IPv4
}

func (p servedPort) id() string {
	return p.service + "/" + p.label + "/" + strings.ToLower(p.protocol)
}

// counterName names the service port's connection counter.
func counterName(service, label, protocol string) string {
	return "svc-" + service + "/" + label + "/" + strings.ToLower(protocol)
}

// parseCounterName is counterName's inverse.
func parseCounterName(name string) (service, label, protocol string, ok bool) {
	rest, ok := strings.CutPrefix(name, "svc-")
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], strings.ToUpper(parts[2]), true
}

func serviceChain(p servedPort) string { return "svc-" + p.id() }

func endpointChain(p servedPort, ep netip.AddrPort) string {
	return fmt.Sprintf("ep-%s__%s/%d", p.id(), ep.Addr(), ep.Port())
}

func affinitySet(p servedPort, ep netip.AddrPort, timeout time.Duration) string {
	return fmt.Sprintf("aff-%s__%s/%d/%ds", p.id(), ep.Addr(), ep.Port(), int64(timeout/time.Second))
}

// buildConfig is what the rules depend on besides the services.
type buildConfig struct {
	table string
	cidr  netip.Prefix
	// external is where external ports are served: the unspecified
	// address means every local address of the host.
	external netip.Addr
}

// build returns the rules that serve ports (netproxy.PlanPorts' answer):
//
//   - nat prerouting (pods, other hosts) and nat output (the host) jump
//     to svc_services, which looks "daddr . proto . dport" up in the map
//     svc_ips (portals, and external ports on a given ExternalAddress) and
//     "proto . dport" in svc_external for any other local address (external
//     ports on every host address, 127.0.0.1 included, never the portal
//     range), each element a goto to the service port's chain;
//   - a service port's chain counts the new connection in its named
//     counter and takes the next endpoint strictly in turn: numgen inc
//     mod N, with the port's slot, is the key of the map svc_turns, which
//     gives the endpoint's address and port to the DNAT;
//   - with ClientIP affinity, a client in an endpoint's affinity set goes
//     to that endpoint's chain, and a new one takes its turn in the map
//     svc_sticky_turns, whose elements go to endpoint chains that record
//     the client (update, which also renews the timeout) and DNAT;
//   - nat postrouting masquerades only hairpin (a client reaching itself)
//     and connections from the host itself (127.0.0.1 included), so that
//     a backend sees a pod's or another host's own address;
//   - filter input refuses new connections to service ports without ready
//     endpoints: TCP with a reset, UDP with ICMP port unreachable.
//
// Everything else of the portal range is netproxy.Node's guard's job.
func build(bc buildConfig, ports []netproxy.PlannedPort, errs map[string]error) *ruleset {
	table := &nftables.Table{Name: bc.table, Family: nftables.TableFamilyIPv4}
	rs := &ruleset{table: table, errs: map[string]error{}}
	for name, err := range errs {
		rs.errs[name] = err
	}
	fail := func(service string, err error) {
		rs.errs[service] = joinErr(rs.errs[service], err)
	}

	sets := map[string]*setSpec{}
	newSet := func(name string, key nftables.SetDatatype, isMap bool) *setSpec {
		s := &setSpec{set: &nftables.Set{Table: table, Name: name, KeyType: key, Concatenation: len(nftables.ConcatSetTypeElements(key)) > 1}}
		if isMap {
			s.set.IsMap = true
			s.set.DataType = nftables.TypeVerdict
		}
		sets[name] = s
		rs.sets = append(rs.sets, s)
		return s
	}
	svcIPs := newSet(mapServiceIPs, keyAddrProtoPort, true)
	external := newSet(mapExternal, keyProtoPort, true)
	noep := newSet(setNoEndpoints, keyAddrProtoPort, false)
	noepExt := newSet(setNoEndpointExt, keyProtoPort, false)
	hairpin := newSet(setHairpin, keyAddrAddr, false)
	endpoints := newSet(setEndpoints, keyAddrProtoPort, false)
	turns := newSet(mapTurns, keySlotTurn, true)
	turns.set.DataType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	sticky := newSet(mapStickyTurns, keySlotTurn, true)
	slots := map[uint32]bool{}
	seen := map[*setSpec]map[string]bool{}
	add := func(s *setSpec, key []byte, text string, goTo string, data []byte) {
		e := nftables.SetElement{Key: key, Val: data}
		if goTo != "" {
			e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: goTo}
			text += " : goto " + goTo
		}
		if seen[s] == nil {
			seen[s] = map[string]bool{}
		}
		if seen[s][text] {
			return
		}
		seen[s][text] = true
		s.elems = append(s.elems, e)
		s.text = append(s.text, text)
	}
	var affinity []*setSpec
	var portChains []*chainSpec

	for _, pp := range ports {
		p := servedPort{service: pp.Service.Name, label: pp.Label, protocol: pp.Protocol, proto: protoNumber(pp.Protocol)}
		for _, a := range pp.Addrs {
			if a.Port() == uint16(pp.Port.Port) && a.Addr() == pp.Service.PortalIP {
				p.portal = a
			} else {
				p.external = a
			}
		}
		if !p.portal.IsValid() && !p.external.IsValid() {
			continue
		}
		for _, ep := range pp.Port.Endpoints {
			if !ep.Addr().Is4() {
				fail(p.service, fmt.Errorf("service %s port %s: endpoint %s: %w", p.service, p.label, ep, ErrNotIPv4))
				continue
			}
			if !slices.Contains(p.endpoints, ep) {
				p.endpoints = append(p.endpoints, ep)
			}
		}
		rs.ports = append(rs.ports, p)
		rs.counters = append(rs.counters, counterName(p.service, p.label, p.protocol))

		// keys at which the port is reached: the portal, and the external
		// port on a given address (svc_ips) or on every one (svc_external)
		type at struct {
			s    *setSpec
			key  []byte
			text string
		}
		var ats, noeps []at
		for _, a := range []netip.AddrPort{p.portal, p.external} {
			switch {
			case !a.IsValid():
			case a.Addr().IsUnspecified():
				ats = append(ats, at{external, protoPortKey(p.proto, a.Port()), protoPortText(p.proto, a.Port())})
				noeps = append(noeps, at{noepExt, protoPortKey(p.proto, a.Port()), protoPortText(p.proto, a.Port())})
			default:
				ats = append(ats, at{svcIPs, addrProtoPortKey(a.Addr(), p.proto, a.Port()), addrProtoPortText(a.Addr(), p.proto, a.Port())})
				noeps = append(noeps, at{noep, addrProtoPortKey(a.Addr(), p.proto, a.Port()), addrProtoPortText(a.Addr(), p.proto, a.Port())})
			}
		}
		if len(p.endpoints) == 0 {
			for _, a := range noeps {
				add(a.s, a.key, a.text, "", nil)
			}
			continue
		}
		svcChain := serviceChain(p)
		for _, a := range ats {
			add(a.s, a.key, a.text, svcChain, nil)
		}

		timeout := affinityTimeout(pp.Service)
		sc := &chainSpec{name: svcChain}
		sc.rules = append(sc.rules, r(fmt.Sprintf("counter name %q", counterName(p.service, p.label, p.protocol)),
			[]expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counterName(p.service, p.label, p.protocol)}}))
		slot := slotOf(p.id(), slots)
		slotBytes := binaryutil.NativeEndian.PutUint32(slot)
		var epChains []*chainSpec
		for i, ep := range p.endpoints {
			ip4 := ep.Addr().As4()
			turn := append(slices.Clip(slotBytes), binaryutil.NativeEndian.PutUint32(uint32(i))...)
			turnText := fmt.Sprintf("%#08x . %d", slot, i)
			add(hairpin, append(ip4[:], ip4[:]...), fmt.Sprintf("%s . %s", ep.Addr(), ep.Addr()), "", nil)
			add(endpoints, addrProtoPortKey(ep.Addr(), p.proto, ep.Port()), addrProtoPortText(ep.Addr(), p.proto, ep.Port()), "", nil)
			if timeout == 0 {
				add(turns, turn, turnText+" : "+ep.String(), "", append(ip4[:], byte(ep.Port()>>8), byte(ep.Port()), 0, 0))
				continue
			}
			// With affinity the endpoint has a chain of its own, which
			// records the client before the DNAT.
			name := endpointChain(p, ep)
			aff := affinitySet(p, ep, timeout)
			affinity = append(affinity, &setSpec{sticky: true, set: &nftables.Set{
				Table: table, Name: aff, KeyType: nftables.TypeIPAddr,
				Dynamic: true, HasTimeout: true, Timeout: timeout,
			}})
			sc.rules = append(sc.rules, r(fmt.Sprintf("ip saddr @%s goto %s", aff, name), []expr.Any{
				loadSaddr(1),
				&expr.Lookup{SourceRegister: 1, SetName: aff},
				&expr.Verdict{Kind: expr.VerdictGoto, Chain: name},
			}))
			epChains = append(epChains, &chainSpec{name: name, rules: []rule{
				r(fmt.Sprintf("update @%s { ip saddr }", aff), []expr.Any{
					loadSaddr(1),
					&expr.Dynset{SrcRegKey: 1, SetName: aff, Operation: unix.NFT_DYNSET_OP_UPDATE},
				}),
				r(fmt.Sprintf("dnat to %s", ep), []expr.Any{
					&expr.Immediate{Register: 1, Data: ip4[:]},
					&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ep.Port())},
					&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
				}),
			}})
			add(sticky, turn, turnText, name, nil)
		}
		// The next turn is the service port's slot and numgen's count, one
		// key of a map shared by all service ports: a map per port would
		// be thousands of sets, which the kernel finds by walking a list.
		// Without affinity it maps to the endpoint's address and port for
		// the DNAT; a verdict map (to endpoint chains) would be walked
		// whole for every rule using it when the kernel validates the
		// table, which costs the square of the number of services.
		turn := []expr.Any{
			&expr.Immediate{Register: unix.NFT_REG32_00, Data: slotBytes},
			&expr.Numgen{Register: unix.NFT_REG32_01, Modulus: uint32(len(p.endpoints)), Type: unix.NFT_NG_INCREMENTAL},
		}
		if timeout == 0 {
			sc.rules = append(sc.rules, r(fmt.Sprintf("dnat to %#08x . numgen inc mod %d map @%s", slot, len(p.endpoints), mapTurns), concat(turn, []expr.Any{
				&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: mapTurns, DestRegister: unix.NFT_REG32_00, IsDestRegSet: true},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: unix.NFT_REG32_00, RegProtoMin: unix.NFT_REG32_01, Specified: true},
			})))
		} else {
			sc.rules = append(sc.rules, r(fmt.Sprintf("%#08x . numgen inc mod %d vmap @%s", slot, len(p.endpoints), mapStickyTurns), concat(turn, []expr.Any{
				&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: mapStickyTurns, IsDestRegSet: true},
			})))
		}
		portChains = append(portChains, sc)
		portChains = append(portChains, epChains...)
	}
	for _, s := range rs.sets {
		sortSet(s)
	}
	slices.SortFunc(affinity, func(a, b *setSpec) int { return cmp.Compare(a.set.Name, b.set.Name) })
	rs.sets = append(rs.sets, affinity...)
	slices.SortFunc(portChains, func(a, b *chainSpec) int { return cmp.Compare(a.name, b.name) })
	rs.chains = append(fixedChains(bc), portChains...)
	for name, err := range rs.errs {
		if err == nil {
			delete(rs.errs, name)
		}
	}
	return rs
}

// fixedChains are the base chains and the dispatch chain.
func fixedChains(bc buildConfig) []*chainSpec {
	base := func(name string, t nftables.ChainType, h *nftables.ChainHook, p *nftables.ChainPriority, rules ...rule) *chainSpec {
		return &chainSpec{name: name, ctype: t, hook: h, prio: p, rules: rules}
	}
	jumpServices := r("jump "+chainServices, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainServices}})

	services := &chainSpec{name: chainServices, rules: []rule{
		r("ip daddr . meta l4proto . th dport vmap @"+mapServiceIPs, concat(
			loadDaddr(unix.NFT_REG32_00), loadL4proto(unix.NFT_REG32_01), loadDport(unix.NFT_REG32_02),
			[]expr.Any{&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: mapServiceIPs, IsDestRegSet: true}},
		)),
	}}
	if bc.external.IsUnspecified() {
		services.rules = append(services.rules, r(
			fmt.Sprintf("ip daddr != %s fib daddr type local meta l4proto . th dport vmap @%s", bc.cidr, mapExternal),
			concat(daddrNotIn(bc.cidr), fibDaddrLocal(),
				loadL4proto(unix.NFT_REG32_00), loadDport(unix.NFT_REG32_01),
				[]expr.Any{&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: mapExternal, IsDestRegSet: true}},
			)))
	}

	ctDNAT := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(0x20 /* IPS_DST_NAT */), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	masq := []expr.Any{&expr.Counter{}, &expr.Masq{}}
	postrouting := []rule{
		r("ct status dnat ip saddr . ip daddr @"+setHairpin+" counter masquerade", concat(ctDNAT,
			[]expr.Any{
				&expr.Payload{DestRegister: unix.NFT_REG32_00, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: setHairpin},
			}, masq)),
		r("ct status dnat fib saddr type local ip daddr . meta l4proto . th dport @"+setEndpoints+" counter masquerade", concat(ctDNAT,
			[]expr.Any{
				&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
			},
			loadDaddr(unix.NFT_REG32_00), loadL4proto(unix.NFT_REG32_01), loadDport(unix.NFT_REG32_02),
			[]expr.Any{&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: setEndpoints}},
			masq)),
	}

	ctNew := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	isTCP := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	inNoep := concat(loadDaddr(unix.NFT_REG32_00), loadL4proto(unix.NFT_REG32_01), loadDport(unix.NFT_REG32_02),
		[]expr.Any{&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: setNoEndpoints}})
	inNoepExt := concat(daddrNotIn(bc.cidr), loadL4proto(unix.NFT_REG32_00), loadDport(unix.NFT_REG32_01),
		[]expr.Any{&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: setNoEndpointExt}})
	reset := []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
	unreachable := []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port unreachable */}}
	noepText := "ct state new ip daddr . meta l4proto . th dport @" + setNoEndpoints
	noepExtText := fmt.Sprintf("ct state new ip daddr != %s meta l4proto . th dport @%s", bc.cidr, setNoEndpointExt)
	input := []rule{
		r(noepText+" meta l4proto tcp counter reject with tcp reset", concat(ctNew, inNoep, isTCP, reset)),
		r(noepText+" counter reject with icmp port-unreachable", concat(ctNew, inNoep, unreachable)),
		r(noepExtText+" meta l4proto tcp counter reject with tcp reset", concat(ctNew, inNoepExt, isTCP, reset)),
		r(noepExtText+" counter reject with icmp port-unreachable", concat(ctNew, inNoepExt, unreachable)),
	}

	return []*chainSpec{
		base(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, jumpServices),
		base(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest, jumpServices),
		base(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, postrouting...),
		base(chainInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter, input...),
		services,
	}
}

func r(text string, exprs []expr.Any) rule { return rule{text: text, exprs: exprs} }

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func loadSaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDaddr(reg uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}}
}

func loadL4proto(reg uint32) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}}
}

// loadDport loads the destination port of TCP or UDP (th dport).
func loadDport(reg uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
}

func daddrNotIn(cidr netip.Prefix) []expr.Any {
	cidr = cidr.Masked()
	var mask [4]byte
	for i := range cidr.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	network := cidr.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: network[:]},
	}
}

func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func protoNumber(protocol string) byte {
	if protocol == "UDP" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func protoName(proto byte) string {
	if proto == unix.IPPROTO_UDP {
		return "udp"
	}
	return "tcp"
}

// Concatenated keys pad each part to 4 bytes (the kernel's 32-bit
// registers).
func addrProtoPortKey(addr netip.Addr, proto byte, port uint16) []byte {
	a := addr.As4()
	return []byte{a[0], a[1], a[2], a[3], proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

func protoPortKey(proto byte, port uint16) []byte {
	return []byte{proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

func addrProtoPortText(addr netip.Addr, proto byte, port uint16) string {
	return fmt.Sprintf("%s . %s . %d", addr, protoName(proto), port)
}

func protoPortText(proto byte, port uint16) string {
	return fmt.Sprintf("%s . %d", protoName(proto), port)
}

// sortSet orders elements by their text, so that equal sets render (and
// are sent) alike whatever the order of the services.
func sortSet(s *setSpec) {
	idx := make([]int, len(s.elems))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(s.text[a], s.text[b]) })
	elems := make([]nftables.SetElement, len(idx))
	text := make([]string, len(idx))
	for i, j := range idx {
		elems[i], text[i] = s.elems[j], s.text[j]
	}
	s.elems, s.text = elems, text
}

func affinityTimeout(s netproxy.Service) time.Duration {
	if s.SessionAffinity != netproxy.AffinityClientIP {
		return 0
	}
	if s.AffinityTimeout <= 0 {
		return netproxy.DefaultAffinityTimeout
	}
	// The set's timeout is in whole seconds, as Kubernetes' field.
	return max(s.AffinityTimeout.Truncate(time.Second), time.Second)
}

// String renders the ruleset in nft's words, one object a line or block,
// for tests and debugging.
func (rs *ruleset) String() string {
	var b strings.Builder
	for _, c := range rs.counters {
		fmt.Fprintf(&b, "counter %s\n", c)
	}
	for _, s := range rs.sets {
		kind := "set"
		if s.set.IsMap {
			kind = "map"
		}
		if s.sticky {
			fmt.Fprintf(&b, "%s %s { dynamic timeout %s }\n", kind, s.set.Name, s.set.Timeout)
			continue
		}
		fmt.Fprintf(&b, "%s %s {", kind, s.set.Name)
		if len(s.text) > 0 {
			b.WriteString(" " + strings.Join(s.text, ", ") + " ")
		}
		b.WriteString("}\n")
	}
	for _, c := range rs.chains {
		b.WriteString(c.text() + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func joinErr(a, b error) error {
	if a == nil {
		return b
	}
	return fmt.Errorf("%w; %w", a, b)
}

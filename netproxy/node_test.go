package netproxy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// testNode is a node in its own network namespace, with a "pod" namespace
// routed through it and an "upstream" namespace that is its default
// route, the way a real node reaches the rest of the world:
//
//	pod (10.235.1.2) ── node (10.235.1.1 | 10.235.2.1) ── upstream (10.235.2.2)
//
// The upstream answers on every address of the portal range (a local
// route for it plus greeters on 0.0.0.0), so anything that leaks out of
// the node would connect instead of being refused.
type testNode struct {
	node, pod, upstream netns.NsHandle
	cidr                netip.Prefix
	leaked              *testenv.Greeter
	n                   *Node
}

const testPort = 8080

func newTestNode(t *testing.T, cidr string) *testNode {
	t.Helper()
	testenv.RequireRoot(t)
	tn := &testNode{
		node: testenv.NewNetNS(t), pod: testenv.NewNetNS(t), upstream: testenv.NewNetNS(t),
		cidr: netip.MustParsePrefix(cidr),
	}
	nodePodSide, _ := vethPair(t, tn.node, tn.pod, "cltest-pod0", "cltest-pod1", "10.235.1.0/30")
	nodeUpSide, upAddr := vethPair(t, tn.node, tn.upstream, "cltest-up0", "cltest-up1", "10.235.2.0/30")
	testenv.MustInNS(t, tn.pod, func() error { return defaultRoute(nodePodSide) })
	testenv.MustInNS(t, tn.node, func() error {
		if err := defaultRoute(upAddr); err != nil {
			return err
		}
		// A podman host forwards (podman turns it on); so does this one.
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
	testenv.MustInNS(t, tn.upstream, func() error {
		if err := defaultRoute(nodeUpSide); err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{
			LinkIndex: lo.Attrs().Index, Dst: prefixToIPNet(tn.cidr),
			Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
		})
	})
	tn.leaked = startGreeter(t, tn.upstream, netip.MustParseAddrPort(fmt.Sprintf("0.0.0.0:%d", testPort)), "leaked")

	n, err := NewNode(NodeConfig{CIDR: tn.cidr, LinkName: "cltest0", TableName: "cuelet_test_0", NetNS: tn.node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	tn.n = n
	return tn
}

// portals are the given portal addresses, each serving testPort over TCP
// and UDP.
func portals(addrs ...netip.Addr) []Portal {
	var out []Portal
	for _, a := range addrs {
		out = append(out, Portal{Addr: a, Ports: []PortalPort{{Protocol: "TCP", Port: testPort}, {Protocol: "UDP", Port: testPort}}})
	}
	return out
}

func (tn *testNode) addr(i int) netip.Addr {
	a := tn.cidr.Addr().As4()
	a[3] += byte(i)
	return netip.AddrFrom4(a)
}

func (tn *testNode) at(i, port int) netip.AddrPort {
	return netip.AddrPortFrom(tn.addr(i), uint16(port))
}

// nothingLeaked fails the test when the upstream saw traffic.
func (tn *testNode) nothingLeaked(t *testing.T) {
	t.Helper()
	if n, m := tn.leaked.TCP.Load(), tn.leaked.UDP.Load(); n != 0 || m != 0 {
		t.Fatalf("the upstream received %d TCP connections and %d datagrams for the portal range", n, m)
	}
}

// state is what Sync owns, for comparing before and after.
func (tn *testNode) state(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	nl, err := netlink.NewHandleAt(tn.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	link, err := nl.LinkByName("cltest0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "link %d %s up=%v\n", link.Attrs().Index, link.Type(), link.Attrs().Flags&net.FlagUp != 0)
	addrs, _ := nl.AddrList(link, netlink.FAMILY_V4)
	var as []string
	for _, a := range addrs {
		as = append(as, a.IPNet.String())
	}
	slices.Sort(as)
	fmt.Fprintf(&b, "addrs %v\n", as)
	routes, _ := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL, LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	var rs []string
	for _, r := range routes {
		rs = append(rs, r.Dst.String())
	}
	slices.Sort(rs)
	fmt.Fprintf(&b, "routes %v\n", rs)
	conn, err := nftables.New(nftables.WithNetNSFd(int(tn.node)))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: "cuelet_test_0", Family: nftables.TableFamilyIPv4}
	if set, err := conn.GetSetByName(table, portalPortsSet); err != nil {
		fmt.Fprintf(&b, "set: %v\n", err)
	} else {
		elems, _ := conn.GetSetElements(set)
		var es []string
		for _, e := range elems {
			es = append(es, fmt.Sprintf("%x", e.Key))
		}
		slices.Sort(es)
		fmt.Fprintf(&b, "portal ports %v\n", es)
	}
	for _, chain := range []string{"forward", "output", "input"} {
		rules, err := conn.GetRules(table, &nftables.Chain{Name: chain, Table: table})
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", chain, err)
			continue
		}
		for _, r := range rules {
			fmt.Fprintf(&b, "%s rule handle %d\n", chain, r.Handle)
		}
	}
	return b.String()
}

func TestNodeKeepsPortalsLocalAndRefusesTheRestOfTheRange(t *testing.T) {
	tn := newTestNode(t, "10.234.7.0/24")
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	startGreeter(t, tn.node, tn.at(10, testPort), "portal")

	for _, from := range []struct {
		name string
		ns   netns.NsHandle
	}{{"node", tn.node}, {"pod", tn.pod}} {
		t.Run("from_"+from.name, func(t *testing.T) {
			if err := tcpReaches(from.ns, tn.at(10, testPort), "portal"); err != nil {
				t.Error(err)
			}
			// An address of the range without a service, and the
			// portal on a port without a listener.
			for _, addr := range []netip.AddrPort{tn.at(99, testPort), tn.at(10, testPort+1)} {
				if err := tcpRefused(from.ns, addr); err != nil {
					t.Error(err)
				}
				if err := udpRefused(from.ns, addr); err != nil {
					t.Error(err)
				}
			}
		})
	}
	tn.nothingLeaked(t)
}

func TestNodeRefusesTheRangeToProgramsListeningOnEveryAddress(t *testing.T) {
	tn := newTestNode(t, "10.234.15.0/24")
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	// Programs on the node that listen on 0.0.0.0: one at the portal's
	// port, one at another.
	startGreeter(t, tn.node, netip.MustParseAddrPort(fmt.Sprintf("0.0.0.0:%d", testPort)), "wild")
	startGreeter(t, tn.node, netip.MustParseAddrPort(fmt.Sprintf("0.0.0.0:%d", testPort+1)), "other")
	for _, from := range []struct {
		name string
		ns   netns.NsHandle
	}{{"node", tn.node}, {"pod", tn.pod}} {
		t.Run("from_"+from.name, func(t *testing.T) {
			// The service port of the portal reaches the listener.
			if err := tcpReaches(from.ns, tn.at(10, testPort), "wild"); err != nil {
				t.Error(err)
			}
			// (A wildcard UDP socket without IP_PKTINFO answers a pod
			// from the node's address on the pod's link, which the pod
			// drops; the proxy answers from the portal. So UDP only
			// from the node.)
			if from.name == "node" {
				if err := udpReaches(from.ns, tn.at(10, testPort), "wild"); err != nil {
					t.Error(err)
				}
			}
			// Another port of the portal, and an address without a
			// service, do not, though something listens there.
			for _, addr := range []netip.AddrPort{tn.at(10, testPort+1), tn.at(99, testPort), tn.at(99, testPort+1)} {
				if err := tcpRefused(from.ns, addr); err != nil {
					t.Error(err)
				}
				if err := udpRefused(from.ns, addr); err != nil {
					t.Error(err)
				}
			}
		})
	}
	// A port that the next Sync leaves out is refused from then on; one it
	// adds is let in.
	if err := tn.n.Sync([]Portal{{Addr: tn.addr(10), Ports: []PortalPort{{Protocol: "TCP", Port: testPort + 1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := tcpRefused(tn.pod, tn.at(10, testPort)); err != nil {
		t.Error(err)
	}
	if err := tcpReaches(tn.pod, tn.at(10, testPort+1), "other"); err != nil {
		t.Error(err)
	}
	if err := udpRefused(tn.pod, tn.at(10, testPort+1)); err != nil {
		t.Error(err)
	}
	tn.nothingLeaked(t)
}

func TestNodeSyncIsIdempotentAndConverges(t *testing.T) {
	tn := newTestNode(t, "10.234.8.0/24")
	if err := tn.n.Sync(portals(tn.addr(10), tn.addr(11))); err != nil {
		t.Fatal(err)
	}
	before := tn.state(t)
	if err := tn.n.Sync(portals(tn.addr(11), tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	if after := tn.state(t); after != before {
		t.Fatalf("a second Sync of the same portals changed the node:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !strings.Contains(before, "addrs [10.234.8.10/32 10.234.8.11/32]") || !strings.Contains(before, "10.234.8.0/24") {
		t.Fatalf("node state lacks the portals or the range route:\n%s", before)
	}

	// Removing a service removes its address; the address is then
	// refused like any other of the range.
	if err := tn.n.Sync(portals(tn.addr(11))); err != nil {
		t.Fatal(err)
	}
	if s := tn.state(t); !strings.Contains(s, "addrs [10.234.8.11/32]") {
		t.Fatalf("stale portal not removed:\n%s", s)
	}
	if err := tcpRefused(tn.pod, tn.at(10, testPort)); err != nil {
		t.Fatal(err)
	}

	// A new range moves the range route and the rules.
	n2, err := NewNode(NodeConfig{CIDR: netip.MustParsePrefix("10.234.9.0/24"), LinkName: "cltest0", TableName: "cuelet_test_0", NetNS: tn.node})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if err := n2.Sync(portals(netip.MustParseAddr("10.234.9.5"))); err != nil {
		t.Fatal(err)
	}
	s := tn.state(t)
	if !strings.Contains(s, "addrs [10.234.9.5/32]") || strings.Contains(s, "10.234.8.0/24") || !strings.Contains(s, "10.234.9.0/24") {
		t.Fatalf("after changing the range:\n%s", s)
	}
	tn.nothingLeaked(t)
}

func TestNodeGuardRejectsTheRangeWithoutTheLocalRoute(t *testing.T) {
	tn := newTestNode(t, "10.234.10.0/24")
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	// Someone deletes the range route: without the nftables guard the
	// range would now be routed to the upstream.
	testenv.MustInNS(t, tn.node, func() error {
		link, err := netlink.LinkByName("cltest0")
		if err != nil {
			return err
		}
		return netlink.RouteDel(&netlink.Route{
			LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(tn.cidr),
			Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
		})
	})
	for _, ns := range []netns.NsHandle{tn.pod, tn.node} {
		if err := tcpRefused(ns, tn.at(99, testPort)); err != nil {
			t.Error(err)
		}
		if err := udpBlocked(ns, tn.at(99, testPort)); err != nil {
			t.Error(err)
		}
	}
	tn.nothingLeaked(t)

	// The next Sync puts the route back.
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	if s := tn.state(t); !strings.Contains(s, "10.234.10.0/24") {
		t.Fatalf("range route not restored:\n%s", s)
	}
}

func TestNodeCleanupRemovesLinkAndTable(t *testing.T) {
	tn := newTestNode(t, "10.234.11.0/24")
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	if err := tn.n.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := tn.n.Cleanup(); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	testenv.MustInNS(t, tn.node, func() error {
		if _, err := netlink.LinkByName("cltest0"); err == nil {
			return fmt.Errorf("link cltest0 still there")
		}
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := conn.ListTables()
		if err != nil {
			return err
		}
		for _, tb := range tables {
			if tb.Name == "cuelet_test_0" {
				return fmt.Errorf("table cuelet_test_0 still there")
			}
		}
		return nil
	})
}

func TestNodeRefusesToTakeOverAForeignLink(t *testing.T) {
	tn := newTestNode(t, "10.234.12.0/24")
	testenv.MustInNS(t, tn.node, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "cltest0"
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "cltest0p"})
	})
	err := tn.n.Sync(portals(tn.addr(10)))
	if err == nil || !strings.Contains(err.Error(), "is a veth") {
		t.Fatalf("Sync with a foreign link named cltest0 = %v, want an error naming it", err)
	}
}

func TestNodeRejectsPortalsOutsideTheRange(t *testing.T) {
	tn := newTestNode(t, "10.234.13.0/24")
	err := tn.n.Sync(portals(tn.addr(10), netip.MustParseAddr("10.234.14.1")))
	if err == nil || !strings.Contains(err.Error(), "10.234.14.1") {
		t.Fatalf("Sync = %v, want an error naming the outside address", err)
	}
	if s := tn.state(t); !strings.Contains(s, "addrs [10.234.13.10/32]") {
		t.Fatalf("the valid portal was not added:\n%s", s)
	}
}

func TestNodeGuardLeavesOtherChainsOfItsTableAlone(t *testing.T) {
	tn := newTestNode(t, "10.234.16.0/24")
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	// The kernel data path's chain in the same table, and a guard rule
	// deleted by hand, which makes the next Sync rewrite the guard.
	table := &nftables.Table{Name: "cuelet_test_0", Family: nftables.TableFamilyIPv4}
	testenv.MustInNS(t, tn.node, func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		conn.AddChain(&nftables.Chain{Name: "svc_other", Table: table})
		rules, err := conn.GetRules(table, &nftables.Chain{Name: "input", Table: table})
		if err != nil || len(rules) == 0 {
			return fmt.Errorf("input rules: %v, %v", rules, err)
		}
		if err := conn.DelRule(rules[0]); err != nil {
			return err
		}
		return conn.Flush()
	})
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	testenv.MustInNS(t, tn.node, func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		if _, err := conn.ListChain(table, "svc_other"); err != nil {
			return fmt.Errorf("the other chain of the table is gone after the guard was rewritten: %w", err)
		}
		rules, err := conn.GetRules(table, &nftables.Chain{Name: "input", Table: table})
		if err != nil || len(rules) != 2 {
			return fmt.Errorf("input rules after Sync: %d, %v; want the guard's 2", len(rules), err)
		}
		return nil
	})
	before := tn.state(t)
	if err := tn.n.Sync(portals(tn.addr(10))); err != nil {
		t.Fatal(err)
	}
	if after := tn.state(t); after != before {
		t.Fatalf("with another chain in the table, Sync rewrote an unchanged guard:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if err := tcpRefused(tn.pod, tn.at(99, testPort)); err != nil {
		t.Error(err)
	}
	tn.nothingLeaked(t)
}

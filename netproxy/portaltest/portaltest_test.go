package portaltest

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"

	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/kernel"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

func TestClaim_holds_a_slot_until_the_test_ends(t *testing.T) {
	testenv.RequireRoot(t)
	held := map[string]bool{}
	for range 3 {
		s := Claim(t)
		if held[s.CIDR.String()] || held[s.Link] || held[s.Table] {
			t.Fatalf("slot %+v shares a range, link or table with one still held", s)
		}
		held[s.CIDR.String()], held[s.Link], held[s.Table] = true, true, true
		if !s.CIDR.Addr().Is4() || s.CIDR.Bits() != 24 {
			t.Fatalf("slot %+v: want an IPv4 /24", s)
		}
	}
	// A slot released at the end of a subtest can be claimed again.
	var first Slot
	t.Run("a", func(t *testing.T) { first = Claim(t) })
	t.Run("b", func(t *testing.T) {
		if again := Claim(t); again != first {
			t.Fatalf("after release got %+v, want %+v again", again, first)
		}
	})
}

// The kernel data path turns route_localnet on where an external port's
// endpoints are (here a bridge of the test's own, holding a documentation
// address and nothing else; no packet is sent); the slot's cleanup turns
// it off again, as it removes the table that records it.
func TestClaim_cleanup_turns_off_what_the_kernel_data_path_turned_on(t *testing.T) {
	testenv.RequireRoot(t)
	var bridge string
	t.Run("holder", func(t *testing.T) {
		s := Claim(t)
		bridge = fmt.Sprintf("cltb%d", s.N)
		attrs := netlink.NewLinkAttrs()
		attrs.Name = bridge
		br := &netlink.Bridge{LinkAttrs: attrs}
		if err := netlink.LinkAdd(br); err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(fmt.Sprintf("192.0.2.%d/32", 1+s.N%250))
		if err := netlink.AddrAdd(br, addr); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(br); err != nil {
			t.Fatal(err)
		}
		// The endpoint is routed through the bridge by a /32 of its own.
		ep, _ := netlink.ParseIPNet("198.51.100.7/32")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: ep, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatal(err)
		}
		node, err := netproxy.NewNode(netproxy.NodeConfig{CIDR: s.CIDR, LinkName: s.Link, TableName: s.Table, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		portal := s.CIDR.Addr().Next()
		if err := node.Sync([]netproxy.Portal{{Addr: portal, Ports: []netproxy.PortalPort{{Protocol: "TCP", Port: 80}}}}); err != nil {
			t.Fatal(err)
		}
		kp, err := kernel.New(kernel.Config{PortalCIDR: s.CIDR, TableName: s.Table, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		defer kp.Close()
		errs := kp.Update([]netproxy.Service{{Name: "web", PortalIP: portal, Ports: []netproxy.Port{{
			Protocol: "TCP", Port: 80, ExternalPort: 30080 + s.N, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:8080")},
		}}}})
		if len(errs) > 0 {
			t.Fatalf("update: %v", errs)
		}
		if got := routeLocalnet(t, bridge); got != "1" {
			t.Fatalf("route_localnet on %s is %s after the update, want 1: the test does not test the cleanup", bridge, got)
		}
	})
	defer func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			netlink.LinkDel(l)
		}
	}()
	if got := routeLocalnet(t, bridge); got != "0" {
		t.Errorf("route_localnet on %s is %s after the slot was released, want 0", bridge, got)
	}
}

func routeLocalnet(t *testing.T, link string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + link + "/route_localnet")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Package portaltest gives each end-to-end test that programs the node a
// portal range, link name and nftables table of its own. Slots are claimed
// with lock files in one folder, so tests of different packages (go test
// runs them in parallel) never share a range, and what a crashed earlier
// holder of a slot left on the host is removed before it is used again.
package portaltest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/kernel"
	"github.com/cuelet/cuelet/netproxy/slotlock"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

// Slot is one test's share of the node.
type Slot struct {
	N     int
	CIDR  netip.Prefix // --portal-cidr: 10.237.N.0/24, never the default 10.96.0.0/16
	Link  string       // --portal-link
	Table string       // --nft-table
}

// slots is how many tests can hold a slot at once.
const slots = 250

// Claim takes a free slot for the rest of the test: a range no other test
// holds and no route of the host overlaps. At the end of the test the
// slot's link and table are removed and the slot is released. Without
// root the test skips, or fails when CI is set (testenv.Require).
func Claim(tb testing.TB) Slot {
	tb.Helper()
	testenv.RequireRoot(tb)
	lockDir := filepath.Join(os.TempDir(), "cuelet-portaltest")
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		tb.Fatalf("list routes: %v", err)
	}
	for n := range slots {
		s := Slot{
			N:     n,
			CIDR:  netip.MustParsePrefix(fmt.Sprintf("10.237.%d.0/24", n)),
			Link:  fmt.Sprintf("clt%d", n),
			Table: fmt.Sprintf("cuelet_t%d", n),
		}
		if foreignRoute(routes, s.CIDR, s.Link) {
			continue
		}
		f, err := slotlock.Take(lockDir, n)
		if err != nil {
			tb.Fatal(err)
		}
		if f == nil {
			continue // another test holds it
		}
		s.clean(tb) // a crashed earlier holder's leftovers
		tb.Cleanup(func() {
			s.clean(tb)
			f.Close()
		})
		return s
	}
	tb.Fatalf("no free portal test slot in 10.237.0-%d.0/24", slots-1)
	return Slot{}
}

// clean removes the slot's link (with its routes) and table. The kernel
// data path (--proxy-mode nftables) goes first: the interface settings it
// turned on (route_localnet, hairpin mode) are recorded in the table, and
// only kernel.Remove turns them off again.
func (s Slot) clean(tb testing.TB) {
	if err := kernel.Remove(kernel.Config{PortalCIDR: s.CIDR, TableName: s.Table, Logger: zerolog.Nop()}); err != nil {
		tb.Errorf("clean portal test slot %d: %v", s.N, err)
	}
	node, err := netproxy.NewNode(netproxy.NodeConfig{CIDR: s.CIDR, LinkName: s.Link, TableName: s.Table, Logger: zerolog.Nop()})
	if err != nil {
		tb.Errorf("clean portal test slot %d: %v", s.N, err)
		return
	}
	defer node.Close()
	if err := node.Cleanup(); err != nil {
		tb.Errorf("clean portal test slot %d: %v", s.N, err)
	}
}

// foreignRoute reports whether a route of a link other than ownLink
// overlaps cidr: something on the host (a real agent, a VPN) uses it.
func foreignRoute(routes []netlink.Route, cidr netip.Prefix, ownLink string) bool {
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 || !netip.PrefixFrom(ip, ones).Overlaps(cidr) { // the default route is no claim
			continue
		}
		if link, err := netlink.LinkByIndex(r.LinkIndex); err == nil && link.Attrs().Name == ownLink {
			continue
		}
		return true
	}
	return false
}

package netproxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults of NodeConfig fields left empty.
const (
	DefaultLinkName  = "cuelet0"
	DefaultTableName = "cuelet"
)

// NodeConfig configures a Node.
type NodeConfig struct {
	// CIDR is the portal range (--portal-cidr), IPv4.
	CIDR netip.Prefix
	// LinkName is the interface that holds the portal addresses (default
	// cuelet0); TableName the nftables table, family ip (default cuelet).
	// Tests use names of their own.
	LinkName, TableName string
	// NetNS is the network namespace to program; 0 or less means the
	// caller's (the host's, for the agent).
	NetNS  netns.NsHandle
	Logger zerolog.Logger
}

// Node keeps portal addresses local to the node (SPEC §3.9):
//
//   - every allocated portal is a /32 (scope host) on the link cuelet0, so
//     `ip addr` shows the portals and the proxy can bind them (kube-proxy's
//     IPVS mode does the same with kube-ipvs0). The link is a dummy; on a
//     kernel without the dummy driver it is a bridge without ports, which
//     behaves the same for local addresses;
//   - a route "local <portal-cidr> dev cuelet0 scope host" in the local
//     table makes every address of the range local: the kernel delivers
//     packets for it, from the node or from pods, to the node's own stack,
//     so an address or port without a listener is refused at once (TCP
//     reset, ICMP port unreachable for UDP) and the local table, consulted
//     before any other, never lets the range be routed out;
//   - the nftables table cuelet rejects anything to the range that would
//     still be forwarded or sent out of an interface other than lo, in case
//     the route is missing, and refuses new connections and flows to the
//     range that are not for a service port, so that programs listening on
//     0.0.0.0 do not answer for the range (see buildGuard).
//
// Sync is idempotent and converges: it adds what is missing, removes stale
// portal addresses and routes from its own link, and rewrites the nftables
// table (atomically) only when it differs.
type Node struct {
	cfg NodeConfig
	log zerolog.Logger
	nl  *netlink.Handle
	nft *nftables.Conn
}

// NewNode opens the netlink and nftables handles; it changes nothing yet.
func NewNode(cfg NodeConfig) (*Node, error) {
	if !cfg.CIDR.IsValid() || !cfg.CIDR.Addr().Is4() {
		return nil, fmt.Errorf("portal range %s: must be an IPv4 prefix", cfg.CIDR)
	}
	cfg.CIDR = cfg.CIDR.Masked()
	if cfg.LinkName == "" {
		cfg.LinkName = DefaultLinkName
	}
	if cfg.TableName == "" {
		cfg.TableName = DefaultTableName
	}
	ns := netns.None()
	var nftOpts []nftables.ConnOption
	if cfg.NetNS > 0 {
		ns = cfg.NetNS
		nftOpts = append(nftOpts, nftables.WithNetNSFd(int(cfg.NetNS)))
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	nft, err := nftables.New(nftOpts...)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	return &Node{
		cfg: cfg,
		log: cfg.Logger.With().Str("component", "portals").Logger(),
		nl:  nl,
		nft: nft,
	}, nil
}

// Close releases the handles; the node keeps its configuration.
func (n *Node) Close() error {
	n.nl.Close()
	return n.nft.CloseLasting()
}

// Portal is a portal address and the service ports open on it.
type Portal struct {
	Addr  netip.Addr
	Ports []PortalPort
}

// PortalPort is one service port of a portal.
type PortalPort struct {
	Protocol string // "TCP" or "UDP"
	Port     uint16
}

// Sync makes the node hold exactly the given portal addresses, plus the
// local route and the nftables guard for the whole range, which lets in
// only the given ports. Addresses outside the range are an error and are
// not added.
func (n *Node) Sync(portals []Portal) error {
	var bad []string
	want := map[netip.Addr]bool{}
	var inRange []Portal
	for _, p := range portals {
		if !n.cfg.CIDR.Contains(p.Addr) {
			bad = append(bad, p.Addr.String())
			continue
		}
		want[p.Addr] = true
		inRange = append(inRange, p)
	}
	// The guard first: it is what protects the range while the rest is
	// being set up.
	changed, err := syncGuard(n.nft, buildGuard(n.cfg.TableName, n.cfg.CIDR), portalPortElements(inRange))
	if err != nil {
		return err
	}
	if changed {
		n.log.Info().Str("action", "nftables").Str("table", n.cfg.TableName).Msg("portal guard rules installed")
	}
	link, err := n.ensureLink()
	if err != nil {
		return err
	}
	if err := n.syncAddrs(link, want); err != nil {
		return err
	}
	if err := n.syncRoute(link); err != nil {
		return err
	}
	if bad != nil {
		return fmt.Errorf("portals %v are outside the portal range %s", bad, n.cfg.CIDR)
	}
	return nil
}

func (n *Node) ensureLink() (netlink.Link, error) {
	name := n.cfg.LinkName
	link, err := n.nl.LinkByName(name)
	if err != nil {
		if _, notFound := err.(netlink.LinkNotFoundError); !notFound {
			return nil, fmt.Errorf("find link %s: %w", name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		err = n.nl.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// No dummy driver in this kernel: a bridge without ports
			// carries local addresses just as well.
			err = n.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}
		if err != nil {
			return nil, fmt.Errorf("add link %s: %w", name, err)
		}
		if link, err = n.nl.LinkByName(name); err != nil {
			return nil, fmt.Errorf("find link %s: %w", name, err)
		}
		n.log.Info().Str("action", "link").Str("link", name).Str("type", link.Type()).Msg("portal link created")
	}
	switch link.Type() {
	case "dummy", "bridge":
	default:
		return nil, fmt.Errorf("link %s exists and is a %s, not a portal link: rename it or pick another link name", name, link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := n.nl.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set link %s up: %w", name, err)
		}
	}
	return link, nil
}

func (n *Node) syncAddrs(link netlink.Link, want map[netip.Addr]bool) error {
	have, err := n.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", n.cfg.LinkName, err)
	}
	present := map[netip.Addr]bool{}
	var stale []netlink.Addr
	for _, a := range have {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if ok && ones == 32 && want[ip] {
			present[ip] = true
			continue
		}
		stale = append(stale, a)
	}
	for _, ip := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		if present[ip] {
			continue
		}
		addr := &netlink.Addr{
			IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)},
			// Host scope: the kernel never picks a portal as the source
			// address of traffic leaving the node.
			Scope: unix.RT_SCOPE_HOST,
		}
		if err := n.nl.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add portal %s to %s: %w", ip, n.cfg.LinkName, err)
		}
		n.log.Info().Str("action", "portal_add").Str("portal", ip.String()).Msg("portal address added")
	}
	for _, a := range stale {
		if err := n.nl.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove portal %s from %s: %w", a.IPNet, n.cfg.LinkName, err)
		}
		n.log.Info().Str("action", "portal_remove").Str("portal", a.IPNet.String()).Msg("portal address removed")
	}
	return nil
}

func (n *Node) syncRoute(link netlink.Link) error {
	want := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       prefixToIPNet(n.cfg.CIDR),
		Table:     unix.RT_TABLE_LOCAL,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
	routes, err := n.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_LOCAL, LinkIndex: link.Attrs().Index},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", n.cfg.LinkName, err)
	}
	found := false
	for _, r := range routes {
		if r.Type != unix.RTN_LOCAL || r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if r.Dst.String() == want.Dst.String() {
			found = true
			continue
		}
		if ones == 32 {
			continue // the kernel's route for a portal address
		}
		// A range route of an earlier --portal-cidr.
		if err := n.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove stale portal route %s: %w", r.Dst, err)
		}
		n.log.Info().Str("action", "route_remove").Str("route", r.Dst.String()).Msg("stale portal range route removed")
	}
	if found {
		return nil
	}
	if err := n.nl.RouteReplace(want); err != nil {
		return fmt.Errorf("add local route for portal range %s on %s: %w", n.cfg.CIDR, n.cfg.LinkName, err)
	}
	n.log.Info().Str("action", "route_add").Str("route", n.cfg.CIDR.String()).Msg("portal range made local")
	return nil
}

// Cleanup removes what Sync set up: the link (with its addresses and
// routes) and the nftables table. Missing pieces are not an error.
func (n *Node) Cleanup() error {
	var errs []error
	if link, err := n.nl.LinkByName(n.cfg.LinkName); err == nil {
		switch link.Type() {
		case "dummy", "bridge":
			if err := n.nl.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("delete link %s: %w", n.cfg.LinkName, err))
			}
		}
	} else if _, notFound := err.(netlink.LinkNotFoundError); !notFound {
		errs = append(errs, fmt.Errorf("find link %s: %w", n.cfg.LinkName, err))
	}
	if err := deleteGuard(n.nft, n.cfg.TableName); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

package kernel

import (
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// goneFlows matches the UDP conntrack entries of a service port towards an
// endpoint that left it: without their deletion, a client that keeps
// sending (a DNS resolver's fixed source port, a syslog sender) would go
// on talking to the old endpoint for as long as it sends, since the NAT
// decision is made once per flow. TCP entries are left alone: an
// established connection to a replica that left finishes; new ones avoid
// it.
//
// The deletion uses vishvananda/netlink's conntrack API (already the
// agent's netlink library, well kept, used by kube-proxy's ancestors and
// Cilium): one dump of the table and a delete per matching entry, with a
// filter of our own, as its ConntrackFilter cannot say "reply source is
// the endpoint and original destination is the service's address".
type goneFlows []goneFlow

type goneFlow struct {
	endpoint netip.AddrPort
	// The service port's addresses: the portal, and the external port
	// (on any local address when the address is unspecified).
	portal, external netip.AddrPort
}

func (g goneFlows) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	replySrc, ok1 := netip.AddrFromSlice(flow.Reverse.SrcIP.To4())
	origDst, ok2 := netip.AddrFromSlice(flow.Forward.DstIP.To4())
	if !ok1 || !ok2 {
		return false
	}
	from := netip.AddrPortFrom(replySrc, flow.Reverse.SrcPort)
	to := netip.AddrPortFrom(origDst, flow.Forward.DstPort)
	for _, f := range g {
		if f.endpoint != from {
			continue
		}
		if to == f.portal || to == f.external ||
			(f.external.IsValid() && f.external.Addr().IsUnspecified() && to.Port() == f.external.Port()) {
			return true
		}
	}
	return false
}

// udpGone lists, for every UDP service port of before, the endpoints that
// after no longer has for it (all of them when the port is gone).
func udpGone(before, after *ruleset) goneFlows {
	if before == nil {
		return nil
	}
	now := map[string][]netip.AddrPort{}
	for _, p := range after.ports {
		now[p.id()] = p.endpoints
	}
	var out goneFlows
	for _, p := range before.ports {
		if p.protocol != "UDP" {
			continue
		}
		for _, ep := range p.endpoints {
			if !slices.Contains(now[p.id()], ep) {
				out = append(out, goneFlow{endpoint: ep, portal: p.portal, external: p.external})
			}
		}
	}
	return out
}

func (p *Proxy) forgetUDPFlows(before, after *ruleset) error {
	gone := udpGone(before, after)
	if len(gone) == 0 {
		return nil
	}
	n, err := p.nl.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, gone)
	if n > 0 {
		p.log.Info().Uint("entries", n).Msg("deleted UDP conntrack entries of endpoints that left")
	}
	return err
}

package agent

import (
	"context"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/dns"
	"github.com/cuelet/cuelet/netproxy/portal"
)

// Names serves the services' names (netproxy/dns.Server).
type Names interface {
	Update(services []dns.Service)
}

// DNSConfig configures the node's DNS server (SPEC §10).
type DNSConfig struct {
	Address netip.Addr // port 53 on it, UDP and TCP
	Domain  string     // --cluster-domain
	// ResolvConf names the host's resolvers that other names go to
	// (default /etc/resolv.conf).
	ResolvConf string
	Registerer prometheus.Registerer
	Log        zerolog.Logger
}

// NewDNS makes the DNS server and the component that serves it for the
// agent's lifetime; the server goes into NodeConfig.Names, the component
// into Config.Components.
func NewDNS(cfg DNSConfig) (*dns.Server, func(context.Context) error, error) {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	s, err := dns.New(dns.Config{
		Domain:     cfg.Domain,
		Upstreams:  dns.ResolvConf(cfg.ResolvConf, cfg.Address, cfg.Log),
		Registerer: cfg.Registerer,
		Logger:     cfg.Log,
	})
	if err != nil {
		return nil, nil, err
	}
	return s, func(ctx context.Context) error { return s.Run(ctx, netip.AddrPortFrom(cfg.Address, 53)) }, nil
}

// publishNames hands the DNS server every service of the desired state
// that has a portal, the last known good of invalid units included, before
// any pod is touched: a service added is answered within the pass that
// sees it, and a pod started in that pass finds it.
func (n *Node) publishNames(d *desired, alloc portal.Allocation) {
	if n.cfg.Names == nil {
		return
	}
	var out []dns.Service
	for _, s := range d.services {
		ip, ok := alloc.Addrs[s.svc.Name]
		if !ok {
			continue
		}
		ds := dns.Service{Name: s.svc.Name, Addr: ip}
		for _, p := range s.svc.Ports {
			ds.Ports = append(ds.Ports, dns.Port{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
		}
		out = append(out, ds)
	}
	n.cfg.Names.Update(out)
}

// dnsPortal is the DNS server's address as a portal, so that the portal
// link holds it and the guard lets port 53 through; none when the node
// serves no names.
func (n *Node) dnsPortal() []netproxy.Portal {
	if n.cfg.Names == nil || !n.cfg.Options.DNSAddress.IsValid() {
		return nil
	}
	return []netproxy.Portal{{Addr: n.cfg.Options.DNSAddress, Ports: []netproxy.PortalPort{
		{Protocol: "UDP", Port: 53}, {Protocol: "TCP", Port: 53},
	}}}
}

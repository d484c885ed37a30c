// Package dns answers the names of the node's services (SPEC §10): A and
// SRV records for <service>.svc.<domain> (and the bare <service>), from a
// record set the agent swaps whole after every pass, and every other name
// forwarded to the host's resolvers with their answers passed through.
//
// It lives under netproxy because what it names are portals: its address is
// a reserved address of the portal range, held on the portal link and let
// through the portal guard like a service port, and like the proxy it is
// handed the whole desired set of services every time (level-triggered).
//
//	s, err := dns.New(dns.Config{Domain: "cluster.local", Upstreams: ups, Registerer: reg})
//	s.Update([]dns.Service{{Name: "web", Addr: netip.MustParseAddr("10.96.0.20"),
//		Ports: []dns.Port{{Name: "http", Protocol: "TCP", Port: 80}}}})
//	err = s.Run(ctx, netip.MustParseAddrPort("10.96.0.10:53"))
package dns

// Package netproxy keeps services reachable on the node: the userspace
// proxy (SPEC --proxy-mode userspace, the first kube-proxy's design) that
// relays every service port's portal and external port to its ready
// endpoints, and the node programming that keeps portal addresses local.
//
// # Proxy
//
// [New] makes a [Proxy]; [Proxy.Run] hosts it until its context ends (run
// it under the agent's errgroup); [Proxy.Update] hands it the whole desired
// set of services every time (level-triggered) and returns per-service
// errors; [Proxy.Status] reports listeners, endpoints and errors.
//
//	p, err := netproxy.New(netproxy.Config{Logger: log, Registerer: reg})
//	go p.Run(ctx)
//	errs := p.Update([]netproxy.Service{{
//		Name: "web", PortalIP: netip.MustParseAddr("10.96.0.20"),
//		Ports: []netproxy.Port{{Name: "http", Port: 80, ExternalPort: 30080,
//			Endpoints: []netip.AddrPort{...}}},
//	}})
//
// Behaviour, in the terms of SPEC §3.10:
//
//   - Every service port listens on PortalIP:Port and, with an external
//     port, on Config.ExternalAddress:ExternalPort (default 0.0.0.0, so
//     127.0.0.1 too), for TCP or UDP. Portal listeners use IP_FREEBIND, so
//     they can be opened before the portal address is on the node.
//   - Update diffs listeners by protocol and address: unchanged ones keep
//     their socket (no gap), removed ones close with their connections,
//     new ones open. A listener that cannot open (port in use) is an error
//     for its service only, and is retried by the next Update.
//   - New connections go round robin over the endpoints, in their order;
//     with SessionAffinity ClientIP a client address stays on its endpoint
//     until it has been idle for AffinityTimeout (default 10800 s).
//   - A TCP dial that fails (refused, or no answer within
//     Config.DialTimeout, default 1 s) moves on to the next endpoint; each
//     endpoint is tried once. When none answers, or there are no endpoints,
//     the client is reset at once.
//   - When an endpoint leaves the set, it gets no new connections and its
//     open TCP connections and UDP sessions are closed at once (its replica
//     stopped or failed readiness; a prompt close lets clients retry
//     elsewhere, where the first kube-proxy kept them open forever).
//   - TCP data is relayed by two goroutines per connection with io.Copy
//     semantics between *net.TCPConn, which Go turns into splice(2): bytes
//     never enter user space. A clean EOF becomes a half-close
//     (CloseWrite) on the other side; an error closes both sides.
//   - UDP: a session per client address, with a connected socket to the
//     endpoint picked for it; replies leave from the address the client
//     sent to (IP_PKTINFO on wildcard listeners). Sessions end after
//     Config.UDPIdleTimeout (default 30 s) without traffic either way, or
//     when the endpoint answers with port unreachable, so the client's next
//     datagram picks again. At most Config.UDPMaxSessions sessions per
//     listener; every buffer is one 64 KiB datagram buffer per session.
//     Without endpoints datagrams are dropped.
//
// Metrics (registered on Config.Registerer; no global registry):
// cuelet_proxy_connections_total{service,port} counts TCP connections and
// UDP sessions; cuelet_proxy_bytes_total{service,port,direction} counts
// relayed bytes, direction "to_endpoint" or "to_client" (TCP bytes are
// added every MiB and when a connection ends). The port label is the
// port's name, or its number when unnamed. Series of removed service ports
// are deleted. Logs go to Config.Logger with the fields service, port,
// action and error; per-connection warnings are sampled.
package netproxy

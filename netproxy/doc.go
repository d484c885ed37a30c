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
//     127.0.0.1 too), for TCP or UDP. Listeners use IP_FREEBIND, so a
//     portal listener opens before its address is on the node. Portal
//     listeners, and an external listener on 0.0.0.0 whose number is also
//     a portal port, set SO_REUSEPORT so that the two can share the number
//     (the kernel hands each packet to the most specific listener); other
//     external listeners do not, so a port another program holds is always
//     an error. Because the whole portal range is local, a wildcard
//     external listener would also get traffic for portal addresses at
//     its port; with Config.PortalCIDR set it resets (TCP) or drops (UDP)
//     that traffic, so the range stays refused where no service is.
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
//   - When an endpoint leaves the set (its replica stopped or failed
//     readiness), it gets no new connections; its open TCP connections
//     may finish within Config.DrainTimeout (default 30 s) and are closed
//     then, where the first kube-proxy kept them open forever; its UDP
//     sessions end at once, so the client's next datagram picks again.
//   - TCP data is relayed by two goroutines per connection (pooled
//     workers, see workers.go). The sockets of TCP connections and
//     listeners are handled with raw system calls and watched by an
//     epoll instance of the proxy's own, which Go's poller watches in
//     turn (poller.go): no net.Conn, no os.File, nothing per connection
//     that enters the scheduler's syscall state (rawio.go says why that
//     matters). Small messages go through a pooled 16 KiB buffer with
//     read(2)/send(2), taken only while the socket has data; bulk
//     transfers (a read that fills the buffer) switch to splice(2)
//     socket to pipe to socket through a pooled pipe, and come back
//     every MiB. A clean EOF becomes a half-close on the other side; an
//     error shuts both sockets down.
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
// relayed bytes, direction "to_endpoint" or "to_client" (added as they
// are relayed; at most a MiB late during bulk transfers). The port label is the
// port's name, or its number when unnamed. Series of removed service ports
// are deleted. Logs go to Config.Logger with the fields service, port,
// action and error; per-connection warnings are sampled.
//
// # Portals on the node
//
// [NewNode] and [Node.Sync] program the node so that portal addresses are
// local and the rest of the portal range is refused on the node and never
// routed out (SPEC §3.9 and §7 "Portals"). Sync takes the allocated
// portals (see package portal) and is idempotent; [Node.Cleanup] removes
// everything again. Three pieces, each for a reason:
//
//  1. The link cuelet0 holds every portal as a /32 with scope host, so
//     `ip addr show cuelet0` lists the portals and the proxy's listeners
//     have a real local address (the kube-ipvs0 way). Scope host keeps
//     the kernel from ever choosing a portal as the source address of
//     traffic leaving the node. The link is a dummy, or, on kernels built
//     without the dummy driver (like the VMs this project is tested on), a
//     bridge without ports, which holds local addresses the same way.
//  2. "local <portal-cidr> dev cuelet0 scope host" in the local routing
//     table makes the whole range local. The local table is looked up
//     before any other, so no address of the range can be routed out, and
//     the kernel itself refuses what has no listener: a TCP reset, or an
//     ICMP port unreachable for UDP, at once, from the node and from pods
//     (whose packets to the range are delivered locally, not forwarded).
//     This is what makes "refused, not a timeout" hold without per-address
//     rules. Alternatives considered: a blackhole route (drops: clients
//     time out), an unreachable or prohibit route (ICMP host unreachable
//     or admin prohibited: an error, but not the reset or port unreachable
//     SPEC §7 asks for), or nftables reject rules for every address
//     without a service (a rule set to rewrite on every change).
//  3. The nftables table cuelet (family ip) rejects anything addressed to
//     the range in the forward hook, and in the output hook when it would
//     leave through an interface other than lo (TCP with a reset, others
//     with port unreachable). With the route in place these rules never
//     match; they guard the moments without it (before the first Sync, or
//     after someone deletes the route) and count what they catch. Its
//     input chain refuses new TCP connections and UDP flows to the range
//     whose address, protocol and port are not a service port (the set
//     portal_ports, which Sync keeps equal to the services' ports): without
//     it a program listening on 0.0.0.0 of the node would answer on every
//     address of the range (kube-proxy's IPVS mode rejects the same
//     traffic for the same reason). The rules are built as data and
//     replaced in one atomic batch, and only when their comments differ
//     from the kernel's; the set's elements are updated in a batch of
//     their own.
//
// Portals answer whoever reaches them, like ClusterIPs on a Kubernetes
// node: the guard stops the range from leaving the node, not other hosts
// that route the range to it.
//
// # Wiring
//
// The agent calls, on every sync: portal.Allocator.Allocate for the
// desired services, Node.Sync with the allocated addresses and their
// services' ports, then
// Proxy.Update with the services, their portals and their ready endpoints
// (from package probe). Portal listeners use IP_FREEBIND, so the order of
// the last two does not matter.
package netproxy

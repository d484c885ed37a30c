// Package kernel is the kernel data path of services (SPEC §8,
// `--proxy-mode nftables`): it serves the same portals and external ports
// as the userspace proxy (netproxy.Proxy) with DNAT rules in the agent's
// nftables table, so that connections never cross the agent and keep
// flowing while it stops, restarts or is upgraded.
//
// # Where the rules live
//
// In the agent's table (--nft-table, family ip), next to the guard that
// netproxy.Node keeps there (chains forward, output, input and the set
// portal_ports). netproxy.Node stays in charge of the portal range in both
// modes: the link holding the portals, the local route that makes the whole
// range local, and the guard that refuses what is not a service port and
// lets nothing of the range leave the node. This package adds its own
// chains, maps, sets and counters, all named svc*, ep-* or aff-*, and never
// touches the guard's; the guard in turn replaces only its own objects. The
// agent syncs the node first and then the services.
//
// # What the rules do
//
// See build for the rules themselves. In short: nat prerouting (pods, other
// hosts) and nat output (the host) look the destination up in a verdict map
// of portals and external ports; a service port's chain counts the
// connection in a named counter and takes its endpoints strictly in turn
// (numgen inc, not at random as kube-proxy does), through one data map
// shared by all service ports; ClientIP affinity keeps a dynamic set with
// timeout per endpoint, as kube-proxy's nftables mode does. Service ports
// without ready endpoints are refused in filter input (TCP reset, ICMP port
// unreachable), even when something on the host listens on every address.
//
// # Client addresses and masquerading
//
// Only two kinds of connection are masqueraded in nat postrouting: hairpin
// (a pod that reaches its own service and gets itself) and those from the
// host itself (127.0.0.1 included). A backend sees a pod's or another
// host's own address. For a pod and its backend on the same podman bridge
// this needs bridged IPv4 to pass through netfilter
// (net.bridge.bridge-nf-call-iptables=1, br_netfilter), as on every
// Kubernetes node; without it the backend's reply is bridged straight to
// the client, un-DNATed, and the connection fails.
//
// # Interface settings, set narrowly and undone
//
// Two kernel settings are needed, and are set only where an endpoint needs
// them, only when they were off:
//
//   - route_localnet on the interface that leads to an endpoint of an
//     external port, when external ports are served on 127.0.0.1: the
//     DNATed packet from 127.0.0.1 is routed out of that interface before
//     postrouting masquerades it, and the reply is un-NATed back to
//     127.0.0.1 before routing, both of which the kernel treats as martian
//     without it. kube-proxy sets it on every interface; here it is only
//     the bridges (or links) behind which such endpoints are;
//   - hairpin mode on the ports of a bridge that leads to endpoints: with
//     br_netfilter, a pod's connection DNATed to itself is bridged back out
//     of the port it came in, which a bridge port does only in hairpin mode.
//     netavark does not turn it on (the CNI bridge plugin and kubenet did).
//     Hairpin mode also reflects a pod's own broadcasts (ARP) back to it,
//     as kubenet's hairpin-veth mode did on Kubernetes nodes for years.
//
// Both are recorded in the table (sets svc_tweak_localnet and
// svc_tweak_hairpin), so that Remove, from whichever agent runs it, turns
// off exactly what was turned on.
//
// # Transactions and adoption
//
// Every Update that changes something is one nftables transaction: what is
// missing is added (a no-op for what exists), changed chains and maps are
// flushed and filled again, what is gone is flushed and then deleted. A
// starting agent adopts what an earlier one left: its first transaction
// rewrites every chain and map it finds, never emptying the table in a
// transaction of its own, so that no portal is ever without rules. Chains
// that do not change keep their rules, and their place in the turn.
// Transactions are sent by a batcher (see batch.go) that spares the
// kernel's acknowledgement of every message.
//
// # Conntrack
//
// UDP flows towards an endpoint that left its service port are deleted
// from conntrack (vishvananda/netlink's conntrack API, already the agent's
// netlink library), so that a client that keeps its source port moves to
// the remaining endpoints at once. Established TCP connections are left
// alone: they finish with the replica that has them; new ones avoid it.
//
// # Limits
//
// IPv4 only, like the portal range. Endpoints are reached through the main
// routing table. Fixed endpoints on the host's own loopback are not
// reachable from pods through DNAT.
package kernel

// Package kernel is the kernel data path of services (SPEC §8,
// `--proxy-mode nftables`): it serves the same portals and external ports
// as the userspace proxy (netproxy.Proxy) with DNAT rules in the agent's
// nftables table, so that connections never cross the agent and keep
// flowing while it restarts.
package kernel

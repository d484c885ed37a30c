// Package probe runs a container's readinessProbe (exec, tcpSocket or
// httpGet) with the kubelet's semantics and reports each ready/not-ready
// transition, so that the agent can put a replica into or take it out of
// its services' rotation; the semantics are in docs/manifests.md.
package probe

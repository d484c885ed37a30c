package agent

import (
	"net/netip"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

// replicaView is an observed replica with what the endpoint computation
// needs to know about it.
type replicaView struct {
	def   *manifests.Pod // the pod definition as the manifests say now
	pod   reconcile.ObservedPod
	ready bool // serving (reconcile.ReplicaCondition), and every readiness probe passes
	// targets are the replica's probed containers.
	targets []probeTarget
	// probeReady says, by container name, whether a probed container
	// passes its readiness probe.
	probeReady map[string]bool
}

// podEndpoints returns, for each port of svc, the endpoints of the ready
// replicas its selector picks, in replica name order so that round robin
// is stable across syncs. A named targetPort is resolved per replica
// against the ports its containers declared when it was created, so a
// replica running an older spec keeps working until it is replaced; a
// replica that does not declare the name gets no traffic on that port.
func podEndpoints(svc *manifests.Service, replicas []replicaView) [][]netip.AddrPort {
	out := make([][]netip.AddrPort, len(svc.Ports))
	for _, r := range replicas {
		if !r.ready || !manifests.Selects(svc.Selector, r.def.Labels) {
			continue
		}
		ip, err := netip.ParseAddr(r.pod.IP)
		if err != nil {
			continue
		}
		declared := r.pod.Ports()
		for i, sp := range svc.Ports {
			port := sp.TargetPort.Number
			if sp.TargetPort.Name != "" {
				port = 0
				for _, cp := range declared {
					if cp.Name == sp.TargetPort.Name && cp.Protocol == sp.Protocol {
						port = cp.ContainerPort
						break
					}
				}
			}
			if port > 0 {
				out[i] = append(out[i], netip.AddrPortFrom(ip, uint16(port)))
			}
		}
	}
	return out
}

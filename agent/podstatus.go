package agent

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/cuelet/cuelet/agent/probe"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

// containerStatuses are a replica's containers as status and describe show
// them, with the readiness kubectl's READY n/m counts: a container is
// ready when it runs in a pod whose infra container runs, and passes its
// readiness probe if it has one. v is nil for a replica without a
// definition (going away); its containers are then not ready, as the
// replica is not.
func containerStatuses(p reconcile.ObservedPod, v *replicaView) (phase, condition string, out []ContainerStatus) {
	cond := reconcile.ReplicaCondition(p)
	for _, cc := range cond.Containers {
		st := ContainerStatus{Name: cc.Name, State: cc.State, Phase: string(cc.Phase), ExitCode: cc.ExitCode}
		if oc, ok := p.Container(cc.Name); ok {
			st.StartedAt, st.Restarts = oc.StartedAt, oc.RestartCount
		}
		if v != nil {
			var def *manifests.Container
			for i := range v.def.Containers {
				if v.def.Containers[i].Name == cc.Name {
					def = &v.def.Containers[i]
				}
			}
			if def != nil && def.ReadinessProbe != nil {
				st.Probe = describeProbe(def, def.ReadinessProbe)
			}
			passes, probed := v.probeReady[cc.Name]
			st.Ready = cc.Phase == reconcile.ContainerRunning && strings.EqualFold(p.InfraState, "running") && (!probed || passes)
		}
		out = append(out, st)
	}
	return string(cond.Phase), cond.Reason, out
}

// describeProbe says what a probe does in kubectl describe's words:
// "http-get http://:8080/healthz delay=0s timeout=1s period=10s
// #success=1 #failure=3", with the defaults the prober applies.
func describeProbe(c *manifests.Container, p *manifests.Probe) string {
	var what string
	switch {
	case p.HTTPGet != nil:
		what = fmt.Sprintf("http-get http://:%d%s", resolvePort(c, p.HTTPGet.Port), p.HTTPGet.Path)
	case p.TCPSocket != nil:
		what = fmt.Sprintf("tcp-socket :%d", resolvePort(c, p.TCPSocket.Port))
	case p.Exec != nil:
		what = fmt.Sprintf("exec %q", p.Exec.Command)
	}
	secs := func(n int, def time.Duration) time.Duration {
		return cmp.Or(time.Duration(n)*time.Second, def)
	}
	return fmt.Sprintf("%s delay=%s timeout=%s period=%s #success=%d #failure=%d", what,
		time.Duration(p.InitialDelaySeconds)*time.Second, secs(p.TimeoutSeconds, probe.DefaultTimeout),
		secs(p.PeriodSeconds, probe.DefaultPeriod),
		cmp.Or(p.SuccessThreshold, probe.DefaultSuccessThreshold), cmp.Or(p.FailureThreshold, probe.DefaultFailureThreshold))
}

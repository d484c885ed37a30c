package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/agent/probe"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

// probes runs the readiness probes of the running containers: one
// probe.Worker per container, started when the container appears, stopped
// when it goes or its probe changes. A new container (new ID) gets a new
// worker, so a recreated replica is not ready until it passes on its own.
type probes struct {
	base     context.Context // workers live at most as long as this
	execer   probe.Execer
	onChange func() // a transition changes endpoints: sync
	log      zerolog.Logger

	mu      sync.Mutex
	workers map[string]*probeRun // by container ID
	// seed are the containers an earlier agent saw ready (readyFile):
	// their first worker starts ready.
	seed map[string]bool
}

type probeRun struct {
	worker *probe.Worker
	cancel context.CancelFunc
	spec   string       // the probe and target it was made for
	config probe.Config // the same, as the worker got it
}

// probeTarget is one container that has a readiness probe.
type probeTarget struct {
	id        string
	pod       string // the replica, for the worker's log lines
	container string
	config    probe.Config
	spec      string
}

func newProbes(base context.Context, execer probe.Execer, onChange func(), log zerolog.Logger) *probes {
	return &probes{base: base, execer: execer, onChange: onChange, log: log, workers: map[string]*probeRun{}}
}

// targets lists the probed containers of a replica, with named probe
// ports resolved against the container's declared ports.
func probeTargets(def *manifests.Pod, pod reconcile.ObservedPod) []probeTarget {
	ip, _ := netip.ParseAddr(pod.IP)
	cond := reconcile.ReplicaCondition(pod)
	var out []probeTarget
	for i := range def.Containers {
		c := &def.Containers[i]
		if c.ReadinessProbe == nil {
			continue
		}
		oc, ok := pod.Container(c.Name)
		if !ok || !cond.Running(c.Name) {
			continue
		}
		p := c.ReadinessProbe
		cfg := probe.Config{
			Target: probe.Target{IP: ip, Container: oc.ID},
			Probe: probe.Probe{
				InitialDelay:     time.Duration(p.InitialDelaySeconds) * time.Second,
				Period:           time.Duration(p.PeriodSeconds) * time.Second,
				Timeout:          time.Duration(p.TimeoutSeconds) * time.Second,
				SuccessThreshold: p.SuccessThreshold,
				FailureThreshold: p.FailureThreshold,
			},
		}
		switch {
		case p.Exec != nil:
			cfg.Probe.Exec = &probe.ExecAction{Command: p.Exec.Command}
		case p.TCPSocket != nil:
			cfg.Probe.TCPSocket = &probe.TCPSocketAction{Port: resolvePort(c, p.TCPSocket.Port)}
		case p.HTTPGet != nil:
			cfg.Probe.HTTPGet = &probe.HTTPGetAction{Path: p.HTTPGet.Path, Port: resolvePort(c, p.HTTPGet.Port)}
		}
		spec, _ := json.Marshal(cfg.Probe)
		out = append(out, probeTarget{id: oc.ID, pod: pod.Name, container: c.Name, config: cfg, spec: string(spec) + ip.String()})
	}
	return out
}

// targetsFor is probeTargets for a replica of def as it runs now. A replica
// created from an older spec of def (a rollout has yet to replace it) goes
// on with the probes it was started with: judged by the new spec's probe,
// which may never pass on the old containers, every old replica would leave
// its services at once, where a rollout may cost one (SPEC §9). A replica
// of an older spec that has no probe running yet (an agent restarted
// during a rollout) gets def's.
func (m *probes) targetsFor(def *manifests.Pod, pod reconcile.ObservedPod) []probeTarget {
	targets := probeTargets(def, pod)
	if pod.Labels[reconcile.LabelSpecHash] == reconcile.SpecHash(def) {
		return targets
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, t := range targets {
		if r, ok := m.workers[t.id]; ok {
			targets[i].config, targets[i].spec = r.config, r.spec
		}
	}
	return targets
}

// resolvePort turns a probe's named port into the container's number; an
// unknown name gives 0, a probe that always fails.
func resolvePort(c *manifests.Container, ref manifests.PortRef) int {
	if ref.Name == "" {
		return ref.Number
	}
	for _, p := range c.Ports {
		if p.Name == ref.Name {
			return p.ContainerPort
		}
	}
	return 0
}

// ensure starts workers for targets that have none (or whose probe
// changed); it stops nothing.
func (m *probes) ensure(targets []probeTarget) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range targets {
		if r, ok := m.workers[t.id]; ok {
			if r.spec == t.spec {
				continue
			}
			r.cancel()
		}
		cfg := t.config
		cfg.Execer = m.execer
		// Say whose readiness changed: the worker itself knows only a
		// container ID.
		cfg.Logger = m.log.With().Str("pod", t.pod).Str("container", t.container).Logger()
		cfg.OnChange = func(bool) { m.onChange() }
		cfg.InitialReady = m.seed[t.id]
		delete(m.seed, t.id)
		w, err := probe.New(cfg)
		if err != nil {
			m.log.Warn().Err(err).Str("action", "probe").Msg("cannot start readiness probe")
			continue
		}
		ctx, cancel := context.WithCancel(m.base)
		m.workers[t.id] = &probeRun{worker: w, cancel: cancel, spec: t.spec, config: t.config}
		go w.Run(ctx)
	}
}

// sync makes the workers exactly the targets. The seed applies to the
// first sync only: a container that was not running then and runs later
// (podman keeps its ID across a restart) has to pass on its own.
func (m *probes) sync(targets []probeTarget) {
	m.ensure(targets)
	keep := map[string]bool{}
	for _, t := range targets {
		keep[t.id] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seed = nil
	for id, r := range m.workers {
		if !keep[id] {
			r.cancel()
			delete(m.workers, id)
		}
	}
}

// readyIDs are the probed containers that pass, for readyFile.
func (m *probes) readyIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, r := range m.workers {
		if r.worker.Ready() {
			out = append(out, id)
		}
	}
	return out
}

// ready reports whether every target passes its probe.
func (m *probes) ready(targets []probeTarget) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range targets {
		r, ok := m.workers[t.id]
		if !ok || !r.worker.Ready() {
			return false
		}
	}
	return true
}

// readyByContainer says, for each target's container, whether it passes.
func (m *probes) readyByContainer(targets []probeTarget) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]bool, len(targets))
	for _, t := range targets {
		r, ok := m.workers[t.id]
		out[t.container] = ok && r.worker.Ready()
	}
	return out
}

// Ready is the reconciler's readiness gate for stepped rollouts: it starts
// the replica's probes if they do not run yet and says whether they pass.
// A worker just started is not ready; its first success kicks a sync.
func (m *probes) Ready(r manifests.Replica, pod reconcile.ObservedPod) bool {
	targets := probeTargets(r.Pod, pod)
	m.ensure(targets)
	return m.ready(targets)
}

// WaitReady is the reconciler's readiness gate during a rollout: the next
// replica is replaced only once this one passes its probes.
func (m *probes) WaitReady(ctx context.Context, r manifests.Replica, pod reconcile.ObservedPod) error {
	targets := probeTargets(r.Pod, pod)
	m.ensure(targets)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !m.ready(targets) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// podmanExecer adapts the podman client's Exec, which takes a timeout, to
// the probe's, which has the probe's deadline in its context.
type podmanExecer struct {
	exec func(ctx context.Context, container string, cmd []string, timeout time.Duration) (int, error)
}

func (e podmanExecer) Exec(ctx context.Context, container string, cmd []string) (int, error) {
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return e.exec(ctx, container, cmd, timeout)
}

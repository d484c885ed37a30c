package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile"
)

// exitZero is an Execer whose every command succeeds.
type exitZero struct{}

func (exitZero) Exec(context.Context, string, []string) (int, error) { return 0, nil }

// lockedBuffer is a log sink shared by the probe worker and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A readiness change is logged with the replica and container it is
// about, not only the container ID the worker knows.
func TestProbeLogNamesPodAndContainer(t *testing.T) {
	var out lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newProbes(ctx, exitZero{}, func() {}, zerolog.New(&out))
	def := &manifests.Pod{Name: "web", Containers: []manifests.Container{{
		Name: "httpd",
		ReadinessProbe: &manifests.Probe{
			Exec:             &manifests.ExecAction{Command: []string{"true"}},
			PeriodSeconds:    1,
			TimeoutSeconds:   1,
			SuccessThreshold: 1,
			FailureThreshold: 1,
		},
	}}}
	pod := reconcile.ObservedPod{Name: "web-1", IP: "10.88.0.5", Containers: []reconcile.ObservedContainer{
		{Name: "web-1-httpd", ID: "c0ffee", State: "running", Labels: map[string]string{reconcile.LabelContainer: "httpd"}},
	}}
	targets := probeTargets(def, pod)
	if len(targets) != 1 {
		t.Fatalf("targets = %d, want 1", len(targets))
	}
	m.sync(targets)
	testenv.Eventually(t, 5*time.Second, func() error {
		if !m.ready(targets) {
			return fmt.Errorf("probe has not passed; log:\n%s", out.String())
		}
		return nil
	})
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "readiness changed" {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no readiness line in log:\n%s", out.String())
	}
	if line["pod"] != "web-1" || line["container"] != "httpd" || line["ready"] != true {
		t.Errorf("readiness line = %v, want pod web-1, container httpd, ready true", line)
	}
}

// exitOne is an Execer whose every command fails.
type exitOne struct{}

func (exitOne) Exec(context.Context, string, []string) (int, error) { return 1, nil }

// A container an earlier agent saw ready starts ready, before its first
// probe; one that appears only after the first sync waits for its own.
func TestProbes_seeded_containers_start_ready_in_the_first_sync_only(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newProbes(ctx, exitOne{}, func() {}, zerolog.Nop())
	m.seed = map[string]bool{"c0ffee": true, "later": true}
	def := &manifests.Pod{Name: "web", Containers: []manifests.Container{{
		Name: "httpd",
		ReadinessProbe: &manifests.Probe{
			Exec:          &manifests.ExecAction{Command: []string{"true"}},
			PeriodSeconds: 3600, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
		},
	}}}
	pod := func(name, id string) reconcile.ObservedPod {
		return reconcile.ObservedPod{Name: name, IP: "10.88.0.5", Containers: []reconcile.ObservedContainer{
			{Name: name + "-httpd", ID: id, State: "running", Labels: map[string]string{reconcile.LabelContainer: "httpd"}},
		}}
	}
	first := probeTargets(def, pod("web", "c0ffee"))
	unseeded := probeTargets(def, pod("web-1", "fresh"))
	m.sync(append(slices.Clone(first), unseeded...))
	if !m.ready(first) {
		t.Error("a container recorded ready is not ready before its first probe")
	}
	if m.ready(unseeded) {
		t.Error("a container not recorded is ready before any probe passed")
	}
	later := probeTargets(def, pod("web-2", "later"))
	m.sync(append(append(slices.Clone(first), unseeded...), later...))
	if m.ready(later) {
		t.Error("a recorded container that appeared after the first sync is ready without a probe")
	}
	if got := m.readyIDs(); !slices.Equal(got, []string{"c0ffee"}) {
		t.Errorf("readyIDs = %v, want [c0ffee]", got)
	}
}

func TestReadyRecord_keeps_the_ready_containers_across_agents(t *testing.T) {
	path := filepath.Join(t.TempDir(), readyFile)
	empty, err := (&readyRecord{path: path}).load()
	if err != nil || len(empty) != 0 {
		t.Fatalf("no file: %v, %v; want an empty record", empty, err)
	}
	if err := (&readyRecord{path: path}).save([]string{"b", "a"}); err != nil {
		t.Fatal(err)
	}
	got, err := (&readyRecord{path: path}).load()
	if err != nil || !maps.Equal(got, map[string]bool{"a": true, "b": true}) {
		t.Fatalf("load = %v, %v; want a and b", got, err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := (&readyRecord{path: path}).load(); err == nil || len(got) != 0 {
		t.Fatalf("a broken file: %v, %v; want an error and an empty record", got, err)
	}
}

// passOnTrue is an Execer whose command "true" succeeds and any other fails.
type passOnTrue struct{}

func (passOnTrue) Exec(_ context.Context, _ string, cmd []string) (int, error) {
	if len(cmd) == 1 && cmd[0] == "true" {
		return 0, nil
	}
	return 1, nil
}

// A rollout that changes the readiness probe judges only the replaced
// replicas by the new probe: a replica of the older spec keeps the probe
// it runs, so a new probe that never passes costs the one replica the
// rollout replaces, not every replica's place in its services (SPEC §9).
func TestProbes_a_replica_of_an_older_spec_keeps_its_probe_when_the_probe_changes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newProbes(ctx, passOnTrue{}, func() {}, zerolog.Nop())
	withProbe := func(version, command string) *manifests.Pod {
		return &manifests.Pod{Name: "web", Containers: []manifests.Container{{
			Name: "httpd",
			Env:  map[string]string{"VERSION": version},
			ReadinessProbe: &manifests.Probe{
				Exec:          &manifests.ExecAction{Command: []string{command}},
				PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1,
			},
		}}}
	}
	oldDef, newDef := withProbe("1", "true"), withProbe("2", "false")
	replica := func(name, id string, def *manifests.Pod) reconcile.ObservedPod {
		return reconcile.ObservedPod{
			Name: name, IP: "10.88.0.5",
			Labels: map[string]string{reconcile.LabelSpecHash: reconcile.SpecHash(def)},
			Containers: []reconcile.ObservedContainer{
				{Name: name + "-httpd", ID: id, State: "running", Labels: map[string]string{reconcile.LabelContainer: "httpd"}},
			},
		}
	}
	old := replica("web-1", "c0ffee", oldDef)
	m.sync(m.targetsFor(oldDef, old))
	testenv.Eventually(t, 5*time.Second, testenv.True("web-1 ready", func() bool { return m.ready(m.targetsFor(oldDef, old)) }))

	// The spec changes: web-1 still runs the old one.
	targets := m.targetsFor(newDef, old)
	m.sync(targets)
	if !m.ready(targets) {
		t.Error("web-1, of the older spec, lost its readiness when the new spec's probe came: its worker was replaced")
	}
	if want := probeTargets(oldDef, old)[0].spec; targets[0].spec != want {
		t.Errorf("web-1 is probed with %s, want its own probe %s", targets[0].spec, want)
	}
	// A replica of the new spec is probed with the new probe.
	replaced := replica("web", "beef", newDef)
	if got, want := m.targetsFor(newDef, replaced)[0].spec, probeTargets(newDef, replaced)[0].spec; got != want {
		t.Errorf("the replaced replica is probed with %s, want the new probe %s", got, want)
	}
}

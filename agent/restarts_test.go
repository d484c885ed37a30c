package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile"
)

func TestRestarts_counts_survive_the_state_dir_and_a_bad_file_costs_only_the_counts(t *testing.T) {
	path := filepath.Join(t.TempDir(), restartsFile)
	next := time.Date(2026, 12, 1, 8, 0, 10, 0, time.UTC)
	r := reconcile.NewRestarts()
	r.Restore(map[string]reconcile.CrashLoop{"c1": {Restarts: 2, Delay: 20 * time.Second, Exited: true, NextTry: next}})
	s := restartsSaver{path: path}
	if err := s.save(r); err != nil {
		t.Fatal(err)
	}
	got, err := loadRestarts(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := got.Get("c1"); st.Restarts != 2 || st.Delay != 20*time.Second || !st.Exited || !st.NextTry.Equal(next) {
		t.Errorf("loaded %+v", st)
	}

	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = loadRestarts(path)
	if err == nil || got == nil {
		t.Fatalf("a torn file: %v, %v; want an error and an empty state", got, err)
	}
	if _, ok := got.Get("c1"); ok {
		t.Error("a torn file gave counts")
	}
}

func TestRestarts_status_shows_the_count_and_CrashLoopBackOff_until_the_next_try(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := reconcile.NewRestarts()
	r.Restore(map[string]reconcile.CrashLoop{
		"app":  {Restarts: 3, Exited: true, NextTry: now.Add(40 * time.Second)},
		"side": {Restarts: 1, Exited: true, NextTry: now.Add(10 * time.Second)},
	})
	p := reconcile.ObservedPod{Containers: []reconcile.ObservedContainer{
		{ID: "app", State: "exited"},
		{ID: "side", State: "exited", RestartCount: 2}, // podman's, in a pod of an older cuelet
		{ID: "other", State: "running"},
	}}
	n, reason, next := containerRestarts(p, r, now)
	if n != 6 || reason != reconcile.ReasonCrashLoop || !next.Equal(now.Add(10*time.Second)) {
		t.Errorf("got %d %q %s, want 6 CrashLoopBackOff at the earliest next try", n, reason, next)
	}
	if _, reason, next := containerRestarts(p, r, now.Add(time.Minute)); reason != "" || !next.IsZero() {
		t.Errorf("past every next try: %q %s, want no backoff (the pass restarts them)", reason, next)
	}
	p.Containers[0].State, p.Containers[1].State = "running", "running"
	if n, reason, _ := containerRestarts(p, r, now); n != 6 || reason != "" {
		t.Errorf("running again: %d %q, want the count and no backoff", n, reason)
	}
}

func TestMetrics_count_each_restart_by_pod_replica_and_container(t *testing.T) {
	m := newMetrics(nil, buildInfo{})
	web1 := reconcile.RestartedContainer{Pod: "web", Replica: "web-1", Unit: "web.cue", Container: "app"}
	m.observe(&Report{Restarted: []reconcile.RestartedContainer{web1}})
	m.observe(&Report{Restarted: []reconcile.RestartedContainer{web1}})
	m.observe(&Report{})
	if got := testutil.ToFloat64(m.restarts.WithLabelValues("web", "web-1", "app")); got != 2 {
		t.Errorf("cuelet_container_restarts_total = %v, want 2", got)
	}
}

func TestAgent_a_container_in_backoff_wakes_a_pass_at_its_next_try(t *testing.T) {
	next := time.Now().Add(10 * time.Second)
	s := &fakeSyncer{report: Report{Pods: []PodStatus{
		{Replica: "web", Reason: reconcile.ReasonCrashLoop, NextRestart: next.Add(time.Minute)},
		{Replica: "web-1", Reason: reconcile.ReasonCrashLoop, NextRestart: next},
		{Replica: "db"},
	}}}
	scheduled := make(retries, 1)
	// No resync ticker, no events: only the wake-up can give a second pass.
	startAgent(t, Config{ManifestDir: t.TempDir(), Quiet: time.Millisecond}, s, nil, func(a *Agent) { a.afterFunc = scheduled.afterFunc })
	var r retry
	select {
	case r = <-scheduled:
	case <-time.After(10 * time.Second):
		t.Fatal("no pass scheduled for the next try")
	}
	if r.after <= 0 || r.after > 10*time.Second {
		t.Fatalf("pass scheduled in %s, want at the earliest next try, within 10 s", r.after)
	}
	r.f()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := s.count(); n != 2 {
			return fmt.Errorf("%d passes", n)
		}
		return nil
	})
}

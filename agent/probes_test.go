package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

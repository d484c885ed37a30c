package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agenttest"
	"github.com/cuelet/cuelet/podmantest"
)

// slowReady is a unit with a pod of two replicas whose containers pass
// their readiness probe delay seconds after they start; changing delay
// recreates them one at a time (SPEC §3.6), each waiting for the previous.
func slowReady(delay int) string {
	return fmt.Sprintf(`pods: web: {
	replicas: 2
	labels: app: "web"
	containers: app: {
		image: %q
		command: ["sh", "-c", "trap 'exit 0' TERM; (sleep $DELAY; touch /tmp/ready) & sleep 1000000 & wait"]
		env: DELAY: "%d"
		readinessProbe: {exec: command: ["test", "-f", "/tmp/ready"], periodSeconds: 1}
	}
}
`, podmantest.Image, delay)
}

// A restarted agent whose first pass waits for a rollout answers `cuelet
// status` and serves its portals before that pass is over. It also
// measures how long a change made meanwhile waits: the pass in progress
// finishes its rollout first.
func TestLongFirstPassStillAnswersStatusAndServesPortals(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	n.Write("db.cue", endpointService("db", helloServer(t), 5432))
	n.Write("web.cue", slowReady(0))
	a := n.Start(agenttest.Options{})
	rep := a.WaitSynced(startWithin, time.Time{}, nil)
	waitRunning(t, n, startWithin, "web", "web-1")
	db, err := portal(rep, "db")
	if err != nil {
		t.Fatal(err)
	}
	a.Signal(syscall.SIGTERM)
	if _, err := a.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	const delay = 20
	n.Write("web.cue", slowReady(delay))
	start := time.Now()
	b := n.Start(agenttest.Options{Notify: true})
	recreated := waitEvent(t, n, start, startWithin, agenttest.ContainerEvent("web-app", "start"))
	t.Logf("the rollout started %v after the agent", recreated.Time.Sub(start).Round(time.Millisecond))
	// A change while the rollout waits for web's readiness.
	at := n.Write("other.cue", podUnit("other", 1, "1"))

	agenttest.Eventually(t, 10*time.Second, func() error {
		_, err := n.Status()
		return err
	})
	t.Logf("status answers %v after the start, while the rollout waits", time.Since(start).Round(time.Millisecond))
	stdout, _, code := n.CLI("status", "--run-dir", n.RunDir)
	if code != 0 || !strings.HasPrefix(stdout, "first sync pass under way") || !strings.Contains(stdout, "web-1") {
		t.Errorf("cuelet status during the first pass (exit %d):\n%s", code, stdout)
	}
	agenttest.Eventually(t, 10*time.Second, func() error { return dial(db) })
	t.Logf("portal serves %v after the start", time.Since(start).Round(time.Millisecond))
	for _, m := range b.Notify.All() {
		if m.Fields["READY"] == "1" && n.Running("web-1") != nil {
			t.Errorf("READY=1 before the first pass is done (%v)", m)
		}
	}

	created := waitEvent(t, n, at, startWithin, agenttest.PodEvent("other", "create"))
	rolled := waitEvent(t, n, recreated.Time, startWithin, agenttest.ContainerEvent("web-1-app", "start"))
	// Documented in agent/README.md: a pass finishes its rollouts before
	// the next pass starts.
	t.Logf("a file written during the rollout: first podman call %v after the write; the rollout's second replica started %v after the write",
		created.Time.Sub(at).Round(time.Millisecond), rolled.Time.Sub(at).Round(time.Millisecond))
	if _, _, err := b.Notify.Wait(0, startWithin, agenttest.Has("READY", "1")); err != nil {
		t.Fatal(err)
	}
	rep = b.WaitSynced(startWithin, start, nil)
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
}

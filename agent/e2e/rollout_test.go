package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
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

// A rollout that waits for readiness holds up nothing (SPEC §3.6 and
// §4.4): the agent replaces one replica a pass and takes the next step in
// a later pass, once the replaced replica is ready. So a restarted agent
// whose manifests ask for a slow rollout finishes its first pass, says
// READY=1, answers `cuelet status` and serves its portals at once, and a
// file written while the rollout waits takes effect within 2 s.
func TestRolloutWaitingForReadinessHoldsUpNothing(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	n.Write("db.cue", endpointService("db", helloServer(t), 5432))
	n.Write("web.cue", slowReady(0))
	a, rep := startSynced(t, n, "web", "web-1")
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
	if _, _, err := b.Notify.Wait(0, startWithin, agenttest.Has("READY", "1")); err != nil {
		t.Fatal(err)
	}
	readyAfter := time.Since(start)
	t.Logf("READY=1 %v after the start, while web waits %ds for readiness", readyAfter.Round(time.Millisecond), delay)
	if readyAfter > delay*time.Second {
		t.Errorf("READY=1 came %v after the start: the first pass waited for the rollout", readyAfter)
	}
	if _, err := n.Status(); err != nil {
		t.Errorf("status while the rollout waits: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return dial(db) })

	// A change while the rollout waits for web's readiness.
	at := n.Write("other.cue", podUnit("other", 1, "1"))
	created := waitEvent(t, n, at, startWithin, agenttest.PodEvent("other", "create"))
	if took := created.Time.Sub(at); took > 2*time.Second {
		t.Errorf("a file written during the rollout: first podman call %v after the write, want within 2 s", took)
	} else {
		t.Logf("a file written during the rollout: first podman call %v after the write", took.Round(time.Millisecond))
	}

	// The rollout goes on once web is ready: web-1 is replaced after web
	// passed its probe, not before.
	rolled := waitEvent(t, n, recreated.Time, startWithin+delay*time.Second, agenttest.ContainerEvent("web-1-app", "start"))
	if gap := rolled.Time.Sub(recreated.Time); gap < delay*time.Second {
		t.Errorf("web-1 was replaced %v after web, before web could be ready (%ds)", gap, delay)
	} else {
		t.Logf("web-1 replaced %v after web", gap.Round(time.Millisecond))
	}
	rep = b.WaitSynced(startWithin, rolled.Time, nil)
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
}

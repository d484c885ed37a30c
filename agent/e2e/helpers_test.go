package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m)) }

// Generous bounds: the machines that run these tests are shared and
// often busy. The SPEC's own bounds are asserted where they apply.
const (
	startWithin  = 2 * time.Minute // an agent's first pass, pods included
	changeWithin = time.Minute     // a change to show on podman
)

// eachProxyMode runs test once in each proxy mode, as parallel subtests
// named after the mode: SPEC §8 promises the same guarantees in both.
func eachProxyMode(t *testing.T, test func(t *testing.T, mode agent.ProxyMode)) {
	for _, mode := range agent.ProxyModes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			test(t, mode)
		})
	}
}

// newNode is agenttest.NewNode with agents in the given proxy mode.
func newNode(t *testing.T, mode agent.ProxyMode) *agenttest.Node {
	n := agenttest.NewNode(t)
	n.ProxyMode = mode
	return n
}

// sleeper runs until SIGTERM: busybox sh as PID 1 with a trap, so that
// removing its pod takes no grace period.
const sleeper = `["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]`

// podUnit is a unit with one pod of busybox sleepers, labelled app=<name>;
// version goes into the environment, so changing it recreates the pod.
func podUnit(name string, replicas int, version string) string {
	return fmt.Sprintf(`pods: %q: {
	replicas: %d
	labels: app: %q
	containers: app: {
		image: %q
		command: %s
		env: VERSION: %q
	}
}
`, name, replicas, name, podmantest.Image, sleeper, version)
}

// endpointService is a service in front of a fixed endpoint (a listener
// of the test on 127.0.0.1), like a Kubernetes service without a selector.
func endpointService(name, endpoint string, port int) string {
	return fmt.Sprintf(`services: %q: {
	endpoints: [%q]
	ports: [{port: %d}]
}
`, name, endpoint, port)
}

// dial connects to addr and expects the hello line.
func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read from %s: %w", addr, err)
	}
	if line != "hello\n" {
		return fmt.Errorf("%s answered %q", addr, line)
	}
	return nil
}

// portal is the service's portal IP:port from the agent's report.
func portal(rep *agent.Report, service string) (string, error) {
	for _, s := range rep.Services {
		if s.Name != service {
			continue
		}
		if s.PortalIP == "" || len(s.Ports) == 0 {
			return "", fmt.Errorf("service %s has no portal yet: %+v", service, s)
		}
		return net.JoinHostPort(s.PortalIP, fmt.Sprint(s.Ports[0].Port)), nil
	}
	return "", fmt.Errorf("service %s not in the report", service)
}

// startSynced starts the agent, waits for its first full pass and for the
// pods to run, and returns the agent and that pass's report.
func startSynced(t *testing.T, n *agenttest.Node, pods ...string) (*agenttest.Agent, *agent.Report) {
	t.Helper()
	a := n.Start(agenttest.Options{})
	rep := a.WaitSynced(startWithin, time.Time{}, nil)
	waitRunning(t, n, startWithin, pods...)
	return a, rep
}

// keepsServing dials addr ten times over two seconds, spread over an
// outage, and reports every dial that fails.
func keepsServing(t *testing.T, addr, while string) {
	t.Helper()
	for i := range 10 {
		if err := dial(addr); err != nil {
			t.Errorf("portal with %s, try %d: %v", while, i, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitRunning(t *testing.T, n *agenttest.Node, within time.Duration, pods ...string) {
	t.Helper()
	testenv.Eventually(t, within, func() error { return n.Running(pods...) })
}

func waitEvent(t *testing.T, n *agenttest.Node, since time.Time, within time.Duration, match func(agenttest.Event) bool) agenttest.Event {
	t.Helper()
	ev, err := n.Events.Wait(since, within, match)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// about matches every event of a pod replica and its containers (but not
// its infra container, which podman names after the pod's ID).
func about(replica string) func(agenttest.Event) bool {
	return func(e agenttest.Event) bool {
		return e.Name == replica || strings.HasPrefix(e.Name, replica+"-")
	}
}

// spec2s checks SPEC §7 "Timing": the agent has made its podman calls for
// a change within 2 s of the write. It logs the measured times.
func spec2s(t *testing.T, what string, write time.Time, firstCall, done agenttest.Event) {
	t.Helper()
	call, took := firstCall.Time.Sub(write), done.Time.Sub(write)
	t.Logf("%s: first podman call %v after the write (%s), done %v after (%s)",
		what, call.Round(time.Millisecond), firstCall, took.Round(time.Millisecond), done)
	if call > 2*time.Second {
		t.Errorf("%s: the agent's first podman call came %v after the write; SPEC §7 allows 2s", what, call)
	}
}

// unit finds a unit in a report.
func unit(rep *agent.Report, id string) (agent.UnitStatus, bool) {
	for _, u := range rep.Units {
		if u.ID == id {
			return u, true
		}
	}
	return agent.UnitStatus{}, false
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// syncPasses reads cuelet_sync_total from the agent's /metrics.
func syncPasses(t *testing.T, a *agenttest.Agent) int {
	t.Helper()
	n, err := a.SyncPasses()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

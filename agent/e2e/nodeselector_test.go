package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// selectedUnit has three pods: "here" and "there" with the nodeSelectors
// given, "any" with none, and a service in front of "there".
func selectedUnit(here, there string) string {
	pod := func(name, selector string) string {
		return fmt.Sprintf(`pods: %q: {
	nodeSelector: %s
	labels: app: %q
	containers: app: {image: %q, command: %s}
}
`, name, selector, name, podmantest.Image, sleeper)
	}
	return pod("here", here) + pod("there", there) + pod("any", "{}") + `
services: there: {
	selector: app: "there"
	ports: [{port: 80}]
}
`
}

func TestPodsRunOnlyOnTheNodesTheirNodeSelectorMatches(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	node := []string{"--node-name", "edge-1", "--node-labels", "zone=west"}
	n.Write("fleet.cue", selectedUnit(`"kubernetes.io/hostname": "edge-1"`, `"kubernetes.io/hostname": "edge-2"`))
	a := n.Start(agenttest.Options{Args: node})
	a.WaitSynced(startWithin, time.Time{}, nil)
	waitRunning(t, n, startWithin, "here", "any")
	if _, ok := n.Pods()["there"]; ok {
		t.Errorf("pod there runs on edge-1, though its nodeSelector names edge-2")
	}
	anyState := n.State("any")

	// With the agent stopped, plan shows the move and why.
	a.Signal(syscall.SIGTERM)
	if _, err := a.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	n.Write("fleet.cue", selectedUnit(`zone: "east"`, `zone: "west"`))
	stdout, stderr, code := n.CLI(append([]string{"plan",
		"--manifests", n.Manifests, "--podman-url", n.Podman.URL, "--state-dir", n.StateDir,
		"--run-dir", n.RunDir, "--portal-cidr", n.PortalCIDR.String()}, node...)...)
	wantPlan := []string{"- pod here (nodeSelector does not match this node)", "+ pod there"}
	for _, l := range wantPlan {
		if !slices.Contains(strings.Split(stdout, "\n"), l) {
			t.Errorf("plan (exit %d) lacks %q:\n%s%s", code, l, stdout, stderr)
		}
	}
	if code != 2 {
		t.Errorf("plan exit %d, want 2 (changes pending): %s", code, stderr)
	}

	// The agent makes it so: here goes, there comes, any is left alone.
	b := n.Start(agenttest.Options{Args: node})
	b.WaitSynced(startWithin, time.Time{}, nil)
	waitRunning(t, n, startWithin, "there", "any")
	testenv.Eventually(t, changeWithin, func() error {
		if _, ok := n.Pods()["here"]; ok {
			return fmt.Errorf("pod here still exists after its nodeSelector stopped matching")
		}
		return nil
	})
	if d := anyState.Diff(n.State("any")); len(d) > 0 {
		t.Errorf("pod any, which targets every node, changed: %v", d)
	}
}

// Two nodes read one repository's unit, each with its own name, podman,
// dirs and portal range: each runs its pods and the pod for every node,
// and both serve the service, which has endpoints only where its pod runs.
func TestTwoNodesShareOneUnitAndEachRunsItsOwnPods(t *testing.T) {
	t.Parallel()
	unit := selectedUnit(`"kubernetes.io/hostname": "edge-1"`, `"kubernetes.io/hostname": "edge-2"`)
	want := map[string][]string{"edge-1": {"any", "here"}, "edge-2": {"any", "there"}}
	endpoints := map[string]int{"edge-1": 0, "edge-2": 1}
	for _, name := range []string{"edge-1", "edge-2"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := agenttest.NewNode(t)
			n.Write("fleet.cue", unit)
			a := n.Start(agenttest.Options{Args: []string{"--node-name", name}})
			a.WaitSynced(startWithin, time.Time{}, nil)
			waitRunning(t, n, startWithin, want[name]...)
			var got []string
			for p := range n.Pods() {
				got = append(got, p)
			}
			slices.Sort(got)
			if !slices.Equal(got, want[name]) {
				t.Errorf("pods %v, want %v", got, want[name])
			}
			testenv.Eventually(t, changeWithin, func() error {
				rep, err := n.Status()
				if err != nil {
					return err
				}
				for _, s := range rep.Services {
					if s.Name == "there" && s.PortalIP != "" && len(s.Ports) == 1 && len(s.Ports[0].Endpoints) == endpoints[name] {
						return nil
					}
				}
				return fmt.Errorf("service there with %d endpoints not in status: %+v", endpoints[name], rep.Services)
			})
		})
	}
}

// fleetUnit has pod alpha for the node named alphaNode, pod beta for node
// b, both labelled app=hello, and the service hello in front of them.
func fleetUnit(alphaNode string) string {
	pod := func(name, node string) string {
		return fmt.Sprintf(`pods: %q: {
	nodeSelector: "kubernetes.io/hostname": %q
	labels: app: "hello"
	containers: app: {image: %q, command: %s}
}
`, name, node, podmantest.Image, sleeper)
	}
	return pod("alpha", alphaNode) + pod("beta", "b") + `
services: hello: {
	selector: app: "hello"
	ports: [{port: 80}]
}
`
}

// Two agents, nodes a and b, share one podman (SPEC §11), each with its
// own folders, portal range and table, and read the same repository: each
// runs its own pod and leaves the other's alone, both serve the service
// with their own pod as its endpoint, and a pod whose nodeSelector moves
// from a to b is removed by a and created by b.
func TestTwoAgentsOnOnePodmanEachOwnTheirPods(t *testing.T) {
	t.Parallel()
	na := agenttest.NewNode(t)
	nb := na.Beside()
	write := func(alphaNode string) time.Time {
		at := na.Write("fleet.cue", fleetUnit(alphaNode))
		nb.Write("fleet.cue", fleetUnit(alphaNode))
		return at
	}
	nodeArgs := func(name string) []string { return []string{"--node-name", name, "--resync", "1s"} }
	write("a")
	a := na.Start(agenttest.Options{Args: nodeArgs("a")})
	b := nb.Start(agenttest.Options{Args: nodeArgs("b")})
	a.WaitSynced(startWithin, time.Time{}, nil)
	b.WaitSynced(startWithin, time.Time{}, nil)
	waitRunning(t, na, startWithin, "alpha", "beta")
	nodeOf := func(pod string) string { return na.Pods()[pod].Labels[reconcile.LabelNode] }
	if nodeOf("alpha") != "a" || nodeOf("beta") != "b" {
		t.Fatalf("alpha is of node %q, beta of node %q: want a and b", nodeOf("alpha"), nodeOf("beta"))
	}
	before := na.State("alpha", "beta")

	// Each serves hello from its own range with its own pod, and sees
	// only its own pod, over passes that start after both pods ran.
	since := time.Now()
	for _, x := range []struct {
		name  string
		n     *agenttest.Node
		agent *agenttest.Agent
		pod   string
	}{{"a", na, a, "alpha"}, {"b", nb, b, "beta"}} {
		x.agent.WaitSynced(changeWithin, since, func(rep *agent.Report) error {
			return ownsOnly(rep, x.n, x.pod)
		})
		stdout, stderr, code := x.n.CLI("plan", "--manifests", x.n.Manifests, "--podman-url", x.n.Podman.URL,
			"--state-dir", x.n.StateDir, "--run-dir", x.n.RunDir, "--portal-cidr", x.n.PortalCIDR.String(), "--node-name", x.name)
		if code != 0 {
			t.Errorf("plan of node %s (exit %d, want 0: in sync):\n%s%s", x.name, code, stdout, stderr)
		}
	}
	if d := before.Diff(na.State("alpha", "beta")); len(d) > 0 {
		t.Errorf("pods changed although nothing did: %v", d)
	}

	// alpha moves to b: a removes it, b creates it, beta stays.
	betaBefore := na.State("beta")
	at := write("b")
	testenv.Eventually(t, changeWithin, func() error {
		p, ok := na.Pods()["alpha"]
		switch {
		case !ok:
			return errors.New("alpha missing")
		case p.Labels[reconcile.LabelNode] != "b":
			return fmt.Errorf("alpha still of node %q", p.Labels[reconcile.LabelNode])
		}
		return na.Running("alpha")
	})
	waitEvent(t, na, at, changeWithin, agenttest.PodEvent("alpha", "remove"))
	b.WaitSynced(changeWithin, time.Now(), func(rep *agent.Report) error { return ownsOnly(rep, nb, "alpha", "beta") })
	a.WaitSynced(changeWithin, time.Now(), func(rep *agent.Report) error { return ownsOnly(rep, na) })
	if d := betaBefore.Diff(na.State("beta")); len(d) > 0 {
		t.Errorf("beta changed when alpha moved: %v", d)
	}
}

// ownsOnly says whether the report of n's agent has exactly pods (as
// replicas) and the service hello in n's portal range with one endpoint
// per pod.
func ownsOnly(rep *agent.Report, n *agenttest.Node, pods ...string) error {
	var got []string
	for _, p := range rep.Pods {
		got = append(got, p.Replica)
	}
	if !slices.Equal(got, pods) {
		return fmt.Errorf("pods %v, want %v", got, pods)
	}
	for _, s := range rep.Services {
		if s.Name != "hello" {
			continue
		}
		ip, err := netip.ParseAddr(s.PortalIP)
		if err != nil || !n.PortalCIDR.Contains(ip) {
			return fmt.Errorf("service hello at %q, not in the node's range %s", s.PortalIP, n.PortalCIDR)
		}
		if len(s.Ports) != 1 || len(s.Ports[0].Endpoints) != len(pods) {
			return fmt.Errorf("service hello: %+v, want %d endpoints", s.Ports, len(pods))
		}
		return nil
	}
	return fmt.Errorf("no service hello: %+v", rep.Services)
}

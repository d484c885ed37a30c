package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
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

package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
)

// SIGKILL of the agent at a random point of applying many pods (SPEC §3.5,
// §3.7): each round writes a new revision of the pods (all recreated, or
// half of them removed, or added back) and kills the agent right after a
// random one of the pod creations and removals it brings, plus a random
// delay of up to 300 ms; a new agent then must converge with every pod
// once, nothing left over, and the volume and portals as they were.
func TestChaos_SIGKILL_of_the_agent_while_it_applies_pods(t *testing.T) {
	t.Parallel()
	sc := campaign(t)
	f := newFault(fmt.Sprintf("SIGKILL of the agent while it applies %d pods", sc.killPods))
	n := newNode(t)
	n.start()

	all := make([]string, sc.killPods)
	for i := range all {
		all[i] = fmt.Sprintf("m%d", i)
	}
	isMany := func(e agenttest.Event) bool {
		return e.Type == "pod" && (e.Action == "create" || e.Action == "remove") && strings.HasPrefix(e.Name, "m")
	}
	for round := range sc.killRounds {
		names := all
		if round%3 == 1 {
			names = all[:len(all)/2]
		}
		// The podman pod events this revision brings: a remove and a
		// create for each pod recreated, one for each added or removed.
		events := 0
		for _, name := range all {
			_, had := n.want[name]
			keep := false
			for _, m := range names {
				keep = keep || m == name
			}
			switch {
			case had && keep:
				events += 2
			case had || keep:
				events++
			}
			delete(n.want, name)
			if keep {
				n.want[name] = []string{"side", "app"}
			}
		}
		k := 1 + n.rng.IntN(events)
		jitter := time.Duration(n.rng.IntN(300)) * time.Millisecond

		at := n.Write("many.cue", podUnit(fmt.Sprint(round), names...))
		err := poll(startWithin, func() error {
			if got := len(n.Events.Since(at, isMany)); got < k {
				return fmt.Errorf("%d of %d pod events", got, k)
			}
			return nil
		})
		if err != nil {
			t.Errorf("round %d: %v; killing the agent anyway", round, err)
		}
		time.Sleep(jitter)
		n.a.Kill()
		f.inject()
		t.Logf("round %d: %d pods, SIGKILL after pod event %d of %d + %v (%v after the write)",
			round, len(names), k, events, jitter, time.Since(at).Round(time.Millisecond))

		n.restart()
		f.after(n.check())
	}
}

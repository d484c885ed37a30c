package chaos

import (
	"fmt"
	"testing"
	"time"
)

// The podman service killed (SIGKILL, as by the OOM killer) while the agent
// applies a change, and started again a few seconds later; then podman
// frozen (SIGSTOP: the socket accepts, nothing answers). Meanwhile the
// status socket answers and the portals serve (SPEC §9 "A hung podman");
// afterwards the agent converges on the change made during the outage.
func TestChaos_podman_killed_or_frozen_under_the_agent(t *testing.T) {
	t.Parallel()
	sc := campaign(t)
	killed := newFault("podman service SIGKILLed and restarted")
	frozen := newFault(fmt.Sprintf("podman service frozen (SIGSTOP) for %s", sc.pause))
	n := newNode(t)
	n.start()

	version := 0
	change := func() {
		version++
		n.Write("extra.cue", podUnit(fmt.Sprint(version), "extra"))
		n.want["extra"] = []string{"side", "app"}
	}
	for i := range sc.podmanKills {
		change()
		time.Sleep(time.Duration(n.rng.IntN(1500)) * time.Millisecond)
		if err := n.Podman.CrashService(); err != nil {
			t.Fatal(err)
		}
		killed.inject()
		stop := make(chan struct{})
		fails := n.serving(250*time.Millisecond, stop)
		time.Sleep(3 * time.Second)
		if err := n.Podman.StartService(ctxFor(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		close(stop)
		problems := <-fails
		for _, p := range problems {
			t.Errorf("podman killed, round %d: %s", i, p)
		}
		killed.after(append(problems, n.check()...))
	}
	for i := range sc.pauses {
		change()
		if err := n.Podman.PauseService(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Podman.ResumeService() })
		frozen.inject()
		stop := make(chan struct{})
		fails := n.serving(250*time.Millisecond, stop)
		time.Sleep(sc.pause)
		close(stop)
		problems := <-fails
		if err := n.Podman.ResumeService(); err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("podman frozen, round %d: %s", i, p)
		}
		frozen.after(append(problems, n.check()...))
	}
}

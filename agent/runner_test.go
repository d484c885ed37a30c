package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

func TestRunner_burst_of_kicks_runs_once(t *testing.T) {
	r := NewRunner(50*time.Millisecond, time.Second)
	var runs atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx, func(context.Context) { runs.Add(1) }) }()

	for i := 0; i < 20; i++ {
		r.Kick()
	}
	testenv.Eventually(t, 5*time.Second, testenv.True("a run", func() bool { return runs.Load() >= 1 }))
	// A second burst after the first run gives exactly one more run.
	for i := 0; i < 20; i++ {
		r.Kick()
	}
	testenv.Eventually(t, 5*time.Second, testenv.True("a second run", func() bool { return runs.Load() >= 2 }))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
}

func TestRunner_kick_during_run_gives_one_more_run(t *testing.T) {
	r := NewRunner(0, 0)
	var runs atomic.Int32
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func(context.Context) {
		if runs.Add(1) == 1 {
			<-release
		}
	})
	r.Kick()
	testenv.Eventually(t, 5*time.Second, testenv.True("one run", func() bool { return runs.Load() == 1 }))
	for i := 0; i < 10; i++ { // all while the first run is still busy
		r.Kick()
	}
	close(release)
	testenv.Eventually(t, 5*time.Second, testenv.True("two runs", func() bool { return runs.Load() == 2 }))
	// Nothing else is pending: no third run appears.
	time.Sleep(100 * time.Millisecond)
	if got := runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
}

func TestRunner_steady_kicks_still_run_within_max_delay(t *testing.T) {
	r := NewRunner(80*time.Millisecond, 300*time.Millisecond)
	var runs atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func(context.Context) { runs.Add(1) })
	stop := time.After(3 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond) // never quiet for 80 ms
	defer tick.Stop()
	for runs.Load() == 0 {
		select {
		case <-stop:
			t.Fatal("no run although kicks kept coming for 3 s with MaxDelay 300 ms")
		case <-tick.C:
			r.Kick()
		}
	}
}

package agent

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// fakeClock stands in for time.After in the runner: time moves only when
// the test calls advance, and every wait the runner asks for is logged,
// so a test can tell "still settling" (it asked for another Quiet after a
// kick) from "ran and settles again" (it asked for MaxDelay first).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Duration
	asked   []time.Duration
	pending []fakeWait
}

type fakeWait struct {
	at time.Duration
	c  chan time.Time
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.asked = append(c.asked, d)
	c.pending = append(c.pending, fakeWait{c.now + d, ch})
	return ch
}

// advance moves time on and fires every wait that is due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	c.pending = slices.DeleteFunc(c.pending, func(w fakeWait) bool {
		if w.at > c.now {
			return false
		}
		w.c <- time.Time{}
		return true
	})
}

// waitAsked waits until the runner has asked for n waits and returns
// them.
func (c *fakeClock) waitAsked(t *testing.T, n int) []time.Duration {
	t.Helper()
	var asked []time.Duration
	testenv.Eventually(t, 5*time.Second, testenv.True("the runner asks for a wait", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		asked = slices.Clone(c.asked)
		return len(asked) >= n
	}))
	if len(asked) != n {
		t.Fatalf("the runner asked for waits %v, want %d of them", asked, n)
	}
	return asked
}

// startRunner runs r on a fake clock until the test ends and counts runs.
func startRunner(t *testing.T, r *Runner) (*fakeClock, *atomic.Int32) {
	clock := &fakeClock{}
	r.after = clock.after
	var runs atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx, func(context.Context) { runs.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return clock, &runs
}

func TestRunner_burst_of_kicks_runs_once(t *testing.T) {
	const quiet, maxDelay = 50 * time.Millisecond, time.Second
	r := NewRunner(quiet, maxDelay)
	for range 20 { // before Run: all of them wait as one
		r.Kick()
	}
	clock, runs := startRunner(t, r)
	clock.waitAsked(t, 2) // MaxDelay and Quiet
	clock.advance(quiet)
	testenv.Eventually(t, 5*time.Second, testenv.True("a run", func() bool { return runs.Load() == 1 }))
	// A second burst after the first run gives exactly one more run,
	// however many of its kicks the runner takes while settling: each
	// only asks for another Quiet. Once no kick waits, time moves on
	// until that run comes: the test cannot see whether the runner has
	// asked for the Quiet of the kick it took last.
	for range 20 {
		r.Kick()
	}
	testenv.Eventually(t, 5*time.Second, testenv.True("the runner takes the burst", func() bool { return len(r.kick) == 0 }))
	testenv.Eventually(t, 5*time.Second, testenv.True("a second run", func() bool {
		clock.advance(quiet)
		return runs.Load() >= 2
	}))
	clock.mu.Lock()
	asked := slices.Clone(clock.asked)
	clock.mu.Unlock()
	if n := runs.Load(); n != 2 || asked[2] != maxDelay || slices.ContainsFunc(asked[3:], func(d time.Duration) bool { return d != quiet }) {
		t.Fatalf("%d runs, waits %v; want 2 runs and one settle (MaxDelay, then Quiet for each kick taken) after the first", n, asked)
	}
}

func TestRunner_kick_within_the_quiet_time_puts_the_run_off(t *testing.T) {
	const quiet, maxDelay = 50 * time.Millisecond, time.Second
	r := NewRunner(quiet, maxDelay)
	clock, runs := startRunner(t, r)
	r.Kick()
	clock.waitAsked(t, 2)
	clock.advance(30 * time.Millisecond)
	r.Kick()
	// Still settling: the kick asked for a new Quiet, not for the
	// MaxDelay a new settle after a run begins with.
	if asked := clock.waitAsked(t, 3); asked[2] != quiet {
		t.Fatalf("waits %v: the runner ran before the quiet time was over", asked)
	}
	clock.advance(30 * time.Millisecond) // 60 ms: the first Quiet is over, the second is not
	r.Kick()
	if asked := clock.waitAsked(t, 4); asked[3] != quiet {
		t.Fatalf("waits %v: the runner ran although a kick came within the quiet time", asked)
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("%d runs while kicks kept coming", n)
	}
	clock.advance(quiet)
	testenv.Eventually(t, 5*time.Second, testenv.True("one run once it is quiet", func() bool { return runs.Load() == 1 }))
}

func TestRunner_steady_kicks_still_run_within_max_delay(t *testing.T) {
	const quiet, maxDelay = 80 * time.Millisecond, 300 * time.Millisecond
	r := NewRunner(quiet, maxDelay)
	clock, runs := startRunner(t, r)
	r.Kick()
	clock.waitAsked(t, 2)
	// A kick every 20 ms: never quiet for 80 ms.
	for step := 1; step < 15; step++ {
		clock.advance(20 * time.Millisecond)
		r.Kick()
		if asked := clock.waitAsked(t, 2+step); asked[1+step] != quiet {
			t.Fatalf("after %v the runner ran although kicks kept coming; waits %v", time.Duration(step)*20*time.Millisecond, asked)
		}
	}
	clock.advance(20 * time.Millisecond) // 300 ms since the first kick
	testenv.Eventually(t, 5*time.Second, testenv.True("a run at MaxDelay", func() bool { return runs.Load() == 1 }))
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

func TestRunner_kick_now_runs_without_waiting_for_quiet(t *testing.T) {
	const quiet, maxDelay = 50 * time.Millisecond, time.Second
	r := NewRunner(quiet, maxDelay)
	clock, runs := startRunner(t, r)
	r.KickNow()
	// The fake clock never moves: only a run that waits for nothing comes.
	testenv.Eventually(t, 5*time.Second, testenv.True("a run at once", func() bool { return runs.Load() == 1 }))

	// A burst is settling when the kick for a whole change comes: the
	// burst joins that run, which comes at once.
	clock.mu.Lock()
	waits := len(clock.asked)
	clock.mu.Unlock()
	r.Kick()
	clock.waitAsked(t, waits+2) // MaxDelay and Quiet: settling
	r.KickNow()
	testenv.Eventually(t, 5*time.Second, testenv.True("a second run at once", func() bool { return runs.Load() == 2 }))

	// Plain kicks wait for the quiet time again.
	r.Kick()
	clock.waitAsked(t, waits+4)
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d runs: a plain kick after KickNow ran without settling", n)
	}
	clock.advance(quiet)
	testenv.Eventually(t, 5*time.Second, testenv.True("a third run after the quiet time", func() bool { return runs.Load() == 3 }))
}

package reconcile

import (
	"testing"
	"time"
)

// crashLooper plays one container against Restarts on a clock of its own:
// it runs for a while, exits, and is restarted as soon as Restarts lets it.
type crashLooper struct {
	t   *testing.T
	r   *Restarts
	now time.Time
	c   ObservedContainer
}

func newCrashLooper(t *testing.T) *crashLooper {
	start := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	return &crashLooper{t: t, r: NewRestarts(), now: start, c: ObservedContainer{ID: "c1", State: "running", StartedAt: start}}
}

// run lets the container run for d, then exit.
func (l *crashLooper) run(d time.Duration) {
	l.now = l.now.Add(d)
	l.c.State, l.c.FinishedAt = "exited", l.now
}

// waitForRestart is the delay between the exit and the restart that
// Restarts allows, found by asking it as a pass would, then restarts.
func (l *crashLooper) waitForRestart() time.Duration {
	l.t.Helper()
	exit := l.now
	due, next := l.r.exited(l.c, l.now)
	if !due {
		if !next.After(l.now) {
			l.t.Fatalf("not due at %s, yet next try %s", l.now, next)
		}
		l.now = next.Add(-time.Millisecond)
		if due, _ := l.r.exited(l.c, l.now); due {
			l.t.Fatalf("due a moment before its next try %s", next)
		}
		l.now = next
		if due, again := l.r.exited(l.c, l.now); !due || !again.Equal(next) {
			l.t.Fatalf("at its next try %s: due %v, next %s", next, due, again)
		}
	}
	l.r.restarted(l.c.ID)
	l.c.State, l.c.StartedAt, l.c.FinishedAt = "running", l.now, time.Time{}
	l.r.running(l.c.ID)
	return l.now.Sub(exit)
}

func TestRestarts_first_restart_at_once_then_10s_doubling_up_to_5_minutes(t *testing.T) {
	l := newCrashLooper(t)
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		l.run(time.Second)
		if got := l.waitForRestart(); got != w {
			t.Errorf("restart %d came %s after the exit, want %s", i+1, got, w)
		}
	}
	if st, _ := l.r.Get("c1"); st.Restarts != len(want) {
		t.Errorf("count %d, want %d", st.Restarts, len(want))
	}
}

func TestRestarts_the_delay_resets_after_10_minutes_of_running_and_the_count_does_not(t *testing.T) {
	l := newCrashLooper(t)
	for range 4 {
		l.run(time.Second)
		l.waitForRestart()
	}
	l.run(10 * time.Minute)
	if got := l.waitForRestart(); got != 0 {
		t.Errorf("after 10 min of running the restart came %s after the exit, want at once", got)
	}
	l.run(time.Second)
	if got := l.waitForRestart(); got != 10*time.Second {
		t.Errorf("the next crash waited %s, want 10s: the doubling starts again", got)
	}
	if st, _ := l.r.Get("c1"); st.Restarts != 6 {
		t.Errorf("count %d, want 6", st.Restarts)
	}

	l.run(time.Second)
	l.waitForRestart() // 20 s
	l.run(10*time.Minute - time.Second)
	if got := l.waitForRestart(); got != 40*time.Second {
		t.Errorf("after a run just short of 10 min the restart waited %s, want 40s", got)
	}
}

func TestRestarts_one_exit_seen_by_many_passes_moves_nothing(t *testing.T) {
	l := newCrashLooper(t)
	l.run(time.Second)
	l.waitForRestart()
	l.run(time.Second)
	_, next := l.r.exited(l.c, l.now)
	for range 5 {
		l.now = l.now.Add(time.Second)
		if due, again := l.r.exited(l.c, l.now); due || !again.Equal(next) {
			t.Fatalf("a later pass: due %v, next %s, want %s", due, again, next)
		}
	}
	if st, _ := l.r.Get("c1"); st.Restarts != 1 {
		t.Errorf("count %d, want 1", st.Restarts)
	}
}

func TestRestarts_an_exit_podman_gives_no_time_for_counts_from_when_it_was_seen(t *testing.T) {
	r := NewRestarts()
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	c := ObservedContainer{ID: "c1", State: "exited", StartedAt: now.Add(-time.Second)}
	r.exited(c, now)
	r.restarted("c1")
	_, next := r.exited(c, now.Add(time.Minute))
	if want := now.Add(time.Minute + 10*time.Second); !next.Equal(want) {
		t.Errorf("next try %s, want %s", next, want)
	}
	if _, again := r.exited(c, now.Add(2*time.Minute)); !again.Equal(next) {
		t.Errorf("a later pass moved the next try to %s", again)
	}
}

func TestRestarts_survive_a_snapshot_and_forget_containers_that_are_gone(t *testing.T) {
	l := newCrashLooper(t)
	for range 3 {
		l.run(time.Second)
		l.waitForRestart()
	}
	l.run(time.Second)
	_, next := l.r.exited(l.c, l.now)

	saved, version := l.r.Snapshot()
	if version == 0 {
		t.Fatal("a changed state has version 0")
	}
	again := NewRestarts()
	again.Restore(saved)
	if due, n := again.exited(l.c, l.now); due || !n.Equal(next) {
		t.Errorf("restored: due %v, next %s, want the wait to %s", due, n, next)
	}
	if st, _ := again.Get("c1"); st.Restarts != 3 {
		t.Errorf("restored count %d, want 3", st.Restarts)
	}

	again.keep(map[string]bool{"other": true})
	if _, ok := again.Get("c1"); ok {
		t.Error("a container that is gone is still kept")
	}
	if _, v := again.Snapshot(); v == 0 {
		t.Error("forgetting a container is no change")
	}
}

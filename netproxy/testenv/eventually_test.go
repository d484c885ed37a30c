package testenv

import (
	"errors"
	"testing"
	"time"
)

func TestEventually_returns_once_the_condition_holds(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	Eventually(r, time.Minute, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 || r.fatal != "" {
		t.Fatalf("calls %d, fatal %q; want 3 calls and no failure", calls, r.fatal)
	}
}

func TestEventually_fails_with_the_last_error_when_time_is_up(t *testing.T) {
	r := &recorder{TB: t}
	Eventually(r, 0, func() error { return errors.New("pod web missing") })
	if want := "not within 0s: pod web missing"; r.fatal != want {
		t.Fatalf("fatal %q, want %q", r.fatal, want)
	}
}

func TestEventually_gives_up_at_once_on_a_permanent_error(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	Eventually(r, time.Hour, func() error { calls++; return Permanent(errors.New("agent exited")) })
	if calls != 1 || r.fatal != "agent exited" {
		t.Fatalf("calls %d, fatal %q; want 1 call and the error", calls, r.fatal)
	}
}

func TestTrue_names_what_is_awaited(t *testing.T) {
	ok := false
	cond := True("ready", func() bool { return ok })
	if err := cond(); err == nil || err.Error() != "not yet: ready" {
		t.Fatalf("err %v, want not yet: ready", err)
	}
	ok = true
	if err := cond(); err != nil {
		t.Fatal(err)
	}
}

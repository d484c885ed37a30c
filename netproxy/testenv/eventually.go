package testenv

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Eventually calls cond until it returns nil and fails the test when
// within passes first, with cond's last error, or at once when cond
// returns a Permanent error. It waits 1 ms between the first calls and
// doubles the wait up to 50 ms: a unit test's condition that holds soon is
// seen at once, and an end-to-end test's does not hammer podman.
func Eventually(tb testing.TB, within time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	wait := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		var p permanent
		if errors.As(err, &p) {
			tb.Fatal(p.error)
			return // for a TB whose Fatal returns
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %v", within, err)
			return // likewise
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// True makes a condition of a boolean one: what says what is awaited.
func True(what string, cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("not yet: %s", what)
	}
}

// permanent marks an error that no waiting will cure.
type permanent struct{ error }

// Permanent makes Eventually give up at once with err.
func Permanent(err error) error { return permanent{err} }

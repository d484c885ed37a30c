package agent

import (
	"context"
	"sync/atomic"
	"time"
)

// Runner runs a function once per burst of Kick calls and never runs it
// twice at the same time. It is the bounded-frequency runner of the kubelet
// and kube-proxy reduced to what a level-triggered sync needs: every trigger
// only says "something may have changed", so any number of kicks while a run
// is pending or under way collapse into one more run.
type Runner struct {
	// Quiet is how long the runner waits after a kick for more kicks before
	// it runs, so an editor's save (write temp, rename, touch backup) or a
	// git checkout becomes one run instead of several.
	Quiet time.Duration
	// MaxDelay bounds the wait: a steady trickle of kicks still runs at
	// least this often.
	MaxDelay time.Duration

	kick chan struct{}
	// now is set by KickNow: the next run waits for no quiet time.
	now atomic.Bool
	// after is time.After; the tests give a fake clock's, so that they
	// step through the debounce instead of waiting it out.
	after func(time.Duration) <-chan time.Time
}

// NewRunner returns a runner with the given debounce window and bound.
func NewRunner(quiet, maxDelay time.Duration) *Runner {
	return &Runner{Quiet: quiet, MaxDelay: maxDelay, kick: make(chan struct{}, 1), after: time.After}
}

// Kick asks for a run. It never blocks.
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default: // a run is already pending; it will see this change too
	}
}

// KickNow asks for a run without the quiet wait, for a trigger that is
// known to be whole rather than the start of a burst (a git revision, a
// tree swapped in at once). Kicks that come with it join the same run. It
// never blocks.
func (r *Runner) KickNow() {
	r.now.Store(true)
	r.Kick()
}

// Run calls fn for every burst of kicks until ctx is done.
func (r *Runner) Run(ctx context.Context, fn func(context.Context)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		}
		if !r.settle(ctx) {
			return nil
		}
		fn(ctx)
	}
}

// settle waits until no kick has come for Quiet, or MaxDelay has passed
// since the first one. It reports false when ctx ended meanwhile.
func (r *Runner) settle(ctx context.Context) bool {
	if r.Quiet <= 0 || r.now.Swap(false) {
		return ctx.Err() == nil
	}
	// A timer that is not waited for any more is collected (Go 1.23), so
	// a new one per kick leaks nothing.
	deadline := r.after(r.MaxDelay)
	quiet := r.after(r.Quiet)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return true
		case <-quiet:
			return true
		case <-r.kick:
			if r.now.Swap(false) {
				return true
			}
			quiet = r.after(r.Quiet)
		}
	}
}

package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// Syncer brings the node to the desired state once: read the manifests,
// reconcile podman, program the proxies. It is level-triggered: it never
// learns what triggered it, it looks at everything.
type Syncer interface {
	Sync(ctx context.Context) *Report
}

// fullReader is a Syncer whose passes read again only the manifest files
// whose stat changed (Node, through manifests.Cache). ReadAll makes its
// next pass read every file: the periodic resync and SIGHUP ask for it, so
// that a change no stat shows is still picked up.
type fullReader interface {
	ReadAll()
}

// EventWatcher follows podman's event stream. WatchEvents calls changed for
// every event that may need a sync (a container died or started, a pod was
// removed) and returns when the stream ends or ctx is done.
type EventWatcher interface {
	WatchEvents(ctx context.Context, changed func()) error
}

// Config holds the agent's settings; the zero value of each optional field
// turns that part off (tests use that).
type Config struct {
	ManifestDir string
	// KeepFile is the loader's file-name filter, so that editor leftovers
	// wake nothing.
	KeepFile       func(name string) bool
	RunDir         string        // status socket; "" serves none
	MetricsAddress string        // "" serves no metrics
	Resync         time.Duration // 0: no periodic resync
	// Quiet is the debounce window for bursts of triggers.
	Quiet time.Duration
	// StuckAfter is how long one sync pass may run before the agent
	// counts its loop as stuck (default 15 min: a pass may pull images and
	// wait for rollouts, 2 min each). A stuck agent stops its watchdog
	// pings, so that systemd restarts it, and /healthz answers 503.
	StuckAfter time.Duration
	// Reload delivers SIGHUP.
	Reload <-chan os.Signal
	// Fetch, with --git-url, brings the git source up to date
	// (GitSource.FetchNow) before SIGHUP's pass, so that the pass reads
	// the revision SIGHUP fetched (SPEC §12), not the one before it.
	// nil: SIGHUP only reads everything again.
	Fetch func(ctx context.Context)
	// Registry gets the agent's metrics and is served on MetricsAddress;
	// nil makes a new one. Other components (the proxy) register on it too.
	Registry *prometheus.Registry
	// Components run beside the loops for the agent's lifetime (the proxy).
	Components []func(context.Context) error
	// Source tells the git revision a pass reads (GitSource.Status); nil
	// without --git-url.
	Source func() *SourceStatus
	// Version is cuelet's, and PodmanVersion tells the podman API version
	// once known ("" before); both label cuelet_build_info.
	Version       string
	PodmanVersion func() string
	// ProxyMode is stamped on every report, for `cuelet status`.
	ProxyMode ProxyMode
	// DNS is stamped on every report too; nil without a DNS server.
	DNS *DNSStatus
	Log zerolog.Logger
}

// Agent is the long-running loop of `cuelet run`.
type Agent struct {
	cfg     Config
	events  EventWatcher
	notify  Notifier
	metrics *metrics
	runner  *Runner

	latest        atomic.Pointer[Report]
	passStart     atomic.Int64 // UnixNano when the running pass began; 0 between passes
	stuckLogged   atomic.Bool
	reloadPending atomic.Bool
	lastProblems  []string // pass-level errors last logged, to log once per change
	units         unitLog  // invalid units' problems, logged once per change
	lastRevision  string   // the git revision of the last pass, to log a new one once
	// retry spaces the passes while podman is down, stateRetry those
	// while the state dir cannot be written; retryTimer is the one pass
	// they scheduled (a pass replaces it, so retries never pile up).
	retry, stateRetry backoff
	retryTimer        *time.Timer
	// space wakes a pass once a full state dir has room again.
	space   spaceWatch
	history history // events of the recent passes, for describe
	// restartTimer wakes a pass when the next crash-looping container may
	// be started again: no podman event comes then.
	restartTimer *time.Timer
	// afterFunc is time.AfterFunc; the tests replace it, so that they see
	// the retry delays without waiting them out.
	afterFunc func(time.Duration, func()) *time.Timer
}

// New returns an agent. events may be nil (no podman events: resync only).
// The syncer comes with Run: it is made after the agent, since it reports
// to the agent's Kick and Progress.
func New(cfg Config, events EventWatcher) *Agent {
	if cfg.Quiet == 0 {
		// Measured on the project's machine under load (agent/bench's
		// evgap note in docs/performance.md): the events of one save
		// come at most 36 ms apart (an in-place write, a temp file
		// renamed over, cp, vim's 13-16 events over 26-44 ms, a git
		// checkout of one file), so 40 ms still makes each one pass.
		// A burst that does split costs one more pass, which checks
		// only the units whose files changed; a checkout of many files
		// takes longer than any window and is bounded by MaxDelay.
		cfg.Quiet = 40 * time.Millisecond
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = 15 * time.Minute
	}
	if cfg.KeepFile == nil {
		cfg.KeepFile = func(string) bool { return true }
	}
	a := &Agent{
		cfg:     cfg,
		events:  events,
		metrics: newMetrics(cfg.Registry, buildInfo{version: cfg.Version, podman: cfg.PodmanVersion}),
		// Bursts are coalesced, but a change still takes effect well
		// within the 2 s SPEC §4.4 promises.
		runner: NewRunner(cfg.Quiet, time.Second),
		retry:  backoff{min: time.Second, max: 30 * time.Second},
		// A state write that failed is tried again soon: the state
		// dir's file system may be full for only a moment. The resync
		// would come anyway, so waiting longer gains nothing.
		stateRetry: backoff{min: time.Second, max: cmp.Or(cfg.Resync, 30*time.Second)},
		space:      spaceWatch{avail: availBytes},
		afterFunc:  time.AfterFunc,
	}
	a.metrics.health = a.health
	return a
}

// health is nil while the sync loop makes progress, and says how long the
// running pass has taken once that exceeds StuckAfter.
func (a *Agent) health() error {
	start := a.passStart.Load()
	if start == 0 {
		return nil
	}
	if d := time.Since(time.Unix(0, start)); d > a.cfg.StuckAfter {
		return fmt.Errorf("sync pass running for %s (more than %s)", d.Round(time.Second), a.cfg.StuckAfter)
	}
	return nil
}

// watchdog pings systemd's watchdog while the sync loop is healthy. A
// separate goroutine pinging regardless would keep an agent whose pass
// hangs (on a podman that accepts connections but never answers, say)
// alive forever, serving a stale view.
func (a *Agent) watchdog() {
	if err := a.health(); err != nil {
		if !a.stuckLogged.Swap(true) {
			a.cfg.Log.Error().Str("action", "watchdog").Err(err).Msg("sync loop stuck; watchdog pings stop")
		}
		return
	}
	a.stuckLogged.Store(false)
	a.notify.Watchdog()
}

// Latest is the report of the last finished sync pass; before the first
// one it is that pass's partial report (see Progress), or nil.
func (a *Agent) Latest() *Report { return a.latest.Load() }

// Progress publishes the report of a pass under way (NodeConfig.Progress)
// while no pass has finished yet, so that `cuelet status` answers during a
// long first pass. It is marked Partial; READY=1 and /readyz still wait
// for the pass to finish.
func (a *Agent) Progress(rep *Report) {
	if cur := a.latest.Load(); cur != nil && !cur.Partial {
		return
	}
	r := *rep
	r.Partial = true
	r.Time = time.Now()
	r.ProxyMode, r.DNS = a.cfg.ProxyMode, a.cfg.DNS
	a.latest.Store(&r)
}

// Kick asks for a sync pass.
func (a *Agent) Kick() { a.runner.Kick() }

// KickNow asks for a sync pass without the debounce window: for a change
// that is whole when it comes (a git revision, see OnPublish).
func (a *Agent) KickNow() { a.runner.KickNow() }

// Run runs the agent, with syncer's passes, until ctx is done. It returns
// an error only when a part of it cannot start (the metrics address taken,
// the run dir not writable); a failing sync is reported, not returned.
func (a *Agent) Run(ctx context.Context, syncer Syncer) error {
	watcher, err := NewWatcher(a.cfg.ManifestDir, a.cfg.KeepFile, a.cfg.Log)
	if err != nil {
		return err
	}
	defer watcher.Close()

	readAll := func() {}
	if r, ok := syncer.(fullReader); ok {
		readAll = r.ReadAll
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.runner.Run(ctx, func(ctx context.Context) { a.sync(ctx, syncer) }) })
	g.Go(func() error { return watcher.Run(ctx, a.runner.Kick) })
	if a.cfg.Resync > 0 {
		g.Go(func() error {
			return every(ctx, a.cfg.Resync, func() {
				readAll()
				a.runner.Kick()
			})
		})
	}
	g.Go(func() error {
		return every(ctx, spaceEvery, func() {
			if a.space.roomAgain() {
				a.runner.Kick()
			}
		})
	})
	if a.events != nil {
		g.Go(func() error { return a.followEvents(ctx) })
	}
	if a.cfg.RunDir != "" {
		g.Go(func() error { return serveStatus(ctx, a.cfg.RunDir, a.Latest) })
	}
	if a.cfg.MetricsAddress != "" {
		g.Go(func() error { return a.metrics.serve(ctx, a.cfg.MetricsAddress) })
	}
	if d := a.notify.WatchdogInterval(); d > 0 {
		g.Go(func() error { return every(ctx, d, a.watchdog) })
	}
	if a.cfg.Reload != nil {
		g.Go(func() error { return a.reloads(ctx, readAll) })
	}
	for _, c := range a.cfg.Components {
		g.Go(func() error { return c(ctx) })
	}
	a.runner.Kick()
	<-ctx.Done()
	a.notify.Stopping()
	return g.Wait()
}

// sync runs one pass and publishes its report.
func (a *Agent) sync(ctx context.Context, syncer Syncer) {
	reloading := a.reloadPending.Swap(false)
	start := time.Now()
	a.passStart.Store(start.UnixNano())
	source := a.source() // before the pass: the revision its reads start from
	rep := syncer.Sync(ctx)
	rep.Source = source
	rep.ProxyMode, rep.DNS = a.cfg.ProxyMode, a.cfg.DNS
	a.passStart.Store(0)
	if ctx.Err() != nil {
		return // stopping: a pass cut short says nothing about the node
	}
	rep.Time, rep.Duration = start, time.Since(start)
	rep.Events = a.history.record(rep, rep.Time.Add(rep.Duration))
	a.latest.Store(rep)
	a.metrics.observe(rep)
	a.logChanges(rep)
	a.units.update(rep.Units, a.cfg.Log)
	a.logRevision(rep)
	a.notify.Status(rep.Summary())
	if !a.metrics.ready.Load() || reloading {
		// READY=1 comes after the first pass even when units are invalid
		// or pods failed (SPEC §7): those show in STATUS=.
		a.metrics.ready.Store(true)
		a.notify.Ready()
		a.cfg.Log.Info().Str("action", "ready").Str("status", rep.Summary()).Stringer("took", rep.Duration.Round(time.Millisecond)).Msg("sync pass done")
	}
	a.wakeForRestart(rep)
	a.scheduleRetry(rep)
}

// scheduleRetry schedules the next pass after one that could not finish
// its work: podman down (its events cannot wake us when it is gone) or the
// state not written (nothing wakes us when space comes back). Each waits
// longer every time in a row, and the earlier of the two wins.
func (a *Agent) scheduleRetry(rep *Report) {
	var after []time.Duration
	if rep.PodmanDown {
		after = append(after, a.retry.next())
	} else {
		a.retry.reset()
	}
	if e := stateWriteFailed(rep.Errors); e != nil {
		after = append(after, a.stateRetry.next())
		if noSpace(e) {
			a.space.watch(e)
		} else {
			a.space.stop()
		}
	} else {
		a.stateRetry.reset()
		a.space.stop()
	}
	if a.retryTimer != nil {
		a.retryTimer.Stop()
		a.retryTimer = nil
	}
	if len(after) > 0 {
		a.retryTimer = a.afterFunc(slices.Min(after), a.runner.Kick)
	}
}

// wakeForRestart schedules a pass for the earliest next try of a container
// in crash-loop backoff, replacing the one an earlier pass scheduled.
func (a *Agent) wakeForRestart(rep *Report) {
	var next time.Time
	for _, p := range rep.Pods {
		if !p.NextRestart.IsZero() && (next.IsZero() || p.NextRestart.Before(next)) {
			next = p.NextRestart
		}
	}
	if a.restartTimer != nil {
		a.restartTimer.Stop()
		a.restartTimer = nil
	}
	if !next.IsZero() {
		a.restartTimer = a.afterFunc(max(time.Until(next), 0), a.runner.Kick)
	}
}

func (a *Agent) source() *SourceStatus {
	if a.cfg.Source == nil {
		return nil
	}
	return a.cfg.Source()
}

// logChanges logs pass-level errors when they change, not every pass: a
// podman that is down for an hour gives two lines, not 3600.
func (a *Agent) logChanges(rep *Report) {
	errs := rep.Errors.Strings()
	slices.Sort(errs)
	if slices.Equal(errs, a.lastProblems) {
		return
	}
	if len(errs) == 0 {
		a.cfg.Log.Info().Str("action", "sync").Msg("sync pass clean again")
	}
	for _, e := range errs {
		if !slices.Contains(a.lastProblems, e) {
			a.cfg.Log.Error().Str("action", "sync").Str("error", e).Msg("sync pass problem")
		}
	}
	a.lastProblems = errs
}

// reloads turns SIGHUP into a sync bracketed by RELOADING=1 and READY=1.
// With a git source the fetch comes first, and only then the pass is
// asked for: one pass, on the fetched revision, sends READY=1. A pass
// that other triggers start while the fetch runs reads the old revision
// and does not end the reload.
func (a *Agent) reloads(ctx context.Context, readAll func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.cfg.Reload:
			a.cfg.Log.Info().Str("action", "reload").Msg("SIGHUP: reading everything again")
			a.notify.Reloading()
			kick := a.runner.Kick
			if a.cfg.Fetch != nil {
				a.cfg.Fetch(ctx)
				// The fetched revision is whole: no burst to wait out
				// (as for a periodic fetch's, see GitSource.OnPublish).
				kick = a.runner.KickNow
			}
			// Only now: a pass that starts during the fetch must not
			// take the reload's READY=1 or its full read.
			a.reloadPending.Store(true)
			readAll()
			kick()
		}
	}
}

// followEvents keeps a podman event stream open, reconnecting with
// backoff. Every reconnect asks for a full sync: events may have been
// missed while the stream was down.
func (a *Agent) followEvents(ctx context.Context) error {
	b := backoff{min: time.Second, max: 30 * time.Second}
	for {
		connected := time.Now()
		err := a.events.WatchEvents(ctx, a.runner.Kick)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(connected) > time.Minute {
			b.reset() // the stream was healthy for a while
		}
		if err == nil {
			err = errors.New("event stream ended")
		}
		a.cfg.Log.Debug().Err(err).Str("action", "events").Msg("podman event stream lost; reconnecting")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(b.next()):
		}
		a.runner.Kick()
	}
}

// every calls fn every d until ctx is done.
func every(ctx context.Context, d time.Duration, fn func()) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn()
		}
	}
}

// backoff doubles a delay from min up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

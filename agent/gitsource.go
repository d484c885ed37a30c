package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests/gitsource"
)

// GitConfig is what the git source component needs (SPEC §12).
type GitConfig struct {
	Source *gitsource.Source
	// Period between fetches; FetchNow (the agent's SIGHUP) fetches at
	// once.
	Period time.Duration
	// FetchTimeout bounds each fetch (0: the period, and at least a
	// minute): a remote that accepts and never answers fails its fetch,
	// and the next one, or SIGHUP's, runs.
	FetchTimeout time.Duration
	// Registerer gets cuelet_git_fetch_errors_total and
	// cuelet_source_info; nil registers nothing.
	Registerer prometheus.Registerer
	Log        zerolog.Logger
}

// GitSource runs the fetch loop of `cuelet run --git-url`. It publishes
// revisions and kicks the agent's pass (OnPublish); the agent's watcher
// sees the symlink swap too, as it would for git-sync, so a pass follows
// even without the kick.
type GitSource struct {
	cfg         GitConfig
	fetchErrors prometheus.Counter
	info        *prometheus.GaugeVec
	// now carries FetchNow's requests to Run's loop; each is closed when
	// its fetch is done.
	now chan chan struct{}
	// quiet is set while FetchNow's fetch runs: the revision it publishes
	// kicks no pass, since FetchNow's caller runs one right after.
	quiet atomic.Bool

	mu      sync.Mutex
	lastErr string // the last fetch's error, "" when it worked
}

// NewGitSource returns the component; call Sync once before the agent's
// first pass so that it reads the remote's revision, not nothing.
func NewGitSource(cfg GitConfig) *GitSource {
	g := &GitSource{
		cfg: cfg,
		now: make(chan chan struct{}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cuelet_git_fetch_errors_total", Help: "Git fetches that failed; the last revision stays live.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cuelet_source_info", Help: "1 for the git revision the manifests are read from.",
		}, []string{"revision", "subject"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.fetchErrors, g.info)
	}
	g.setInfo(cfg.Source.Revision())
	return g
}

// OnPublish makes each new revision call fn right after its symlink swap
// (before the old revision's folder is removed): the agent's KickNow, so
// that the pass starts at once rather than when the watcher has seen the
// swap. Call it before Run; a nil GitSource ignores it.
func (g *GitSource) OnPublish(fn func()) {
	if g != nil {
		g.cfg.Source.OnPublish(func(gitsource.Revision) {
			if !g.quiet.Load() {
				fn()
			}
		})
	}
}

// ManifestDir is the folder the agent reads.
func (g *GitSource) ManifestDir() string { return g.cfg.Source.ManifestDir() }

// Status is the live revision and the last fetch's error, for the
// report of a pass; nil on a nil GitSource (no --git-url).
func (g *GitSource) Status() *SourceStatus {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return &SourceStatus{Revision: g.cfg.Source.Revision(), FetchError: g.lastErr}
}

// Run fetches every period and on FetchNow until ctx is done; a nil
// GitSource (no --git-url) returns at once.
func (g *GitSource) Run(ctx context.Context) error {
	if g == nil {
		return nil
	}
	t := time.NewTicker(g.cfg.Period)
	defer t.Stop()
	for {
		var done chan struct{}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case done = <-g.now:
			g.cfg.Log.Info().Str("action", "git").Msg("SIGHUP: fetching at once")
			g.quiet.Store(true)
		}
		g.Sync(ctx)
		if done != nil {
			g.quiet.Store(false)
			close(done)
		}
		t.Reset(g.cfg.Period) // a SIGHUP fetch restarts the period
	}
}

// FetchNow fetches at once and returns when the fetch is done, or ctx is;
// it is the agent's SIGHUP (Config.Fetch). The fetch runs in Run's loop,
// so that it never overlaps a periodic one, and its new revision kicks no
// pass: the caller's pass, right after, reads it. Run must be running; a
// nil GitSource returns at once.
func (g *GitSource) FetchNow(ctx context.Context) {
	if g == nil {
		return
	}
	done := make(chan struct{})
	select {
	case g.now <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// FetchTimeout is the deadline of a fetch with period between fetches:
// the period, and at least a minute (a first clone of a big repository).
func FetchTimeout(period time.Duration) time.Duration { return max(period, time.Minute) }

// Sync fetches once. A failure keeps the live revision and is logged when
// it differs from the last fetch's outcome: a remote that is down for an
// hour gives two lines, not one per period.
func (g *GitSource) Sync(ctx context.Context) {
	d := g.cfg.FetchTimeout
	if d <= 0 {
		d = FetchTimeout(g.cfg.Period)
	}
	fctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("no answer from the remote within %s", d))
	defer cancel()
	rev, changed, err := g.cfg.Source.Sync(fctx)
	if ctx.Err() != nil {
		return // stopping: a fetch cut short says nothing about the remote
	}
	if fctx.Err() != nil {
		err = fmt.Errorf("git fetch: %w", context.Cause(fctx))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err != nil:
		g.fetchErrors.Inc()
		if err.Error() != g.lastErr {
			g.cfg.Log.Error().Str("action", "git").Err(err).Str("kept", rev.String()).Msg("git fetch failed; the last revision stays live")
		}
		g.lastErr = err.Error()
		return
	case g.lastErr != "":
		g.cfg.Log.Info().Str("action", "git").Msg("git fetch works again")
	}
	g.lastErr = ""
	if changed {
		g.setInfo(rev)
		t := g.cfg.Source.LastTimes()
		g.cfg.Log.Info().Str("action", "git").Str("hash", rev.Hash).Str("subject", rev.Subject).
			Stringer("fetch_took", t.Fetch.Round(time.Millisecond)).Stringer("publish_took", t.Publish.Round(time.Millisecond)).
			Msg("new revision published")
	}
}

func (g *GitSource) setInfo(rev gitsource.Revision) {
	g.info.Reset()
	if rev.Hash != "" {
		g.info.WithLabelValues(rev.Hash, rev.Subject).Set(1)
	}
}

// Hook makes every log event carry carries the live revision, so
// that each pass's log says which commit it read.
func (g *GitSource) Hook() zerolog.Hook {
	return zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		if h := g.cfg.Source.Revision().Short(); h != "" {
			e.Str("revision", h)
		}
	})
}

// logRevision logs each pass at debug level with the revision it read,
// and at info level the first pass of a new revision.
func (a *Agent) logRevision(rep *Report) {
	if rep.Source == nil {
		return
	}
	rev := rep.Source.Revision
	a.cfg.Log.Debug().Str("action", "sync").Str("status", rep.Summary()).Stringer("took", rep.Duration.Round(time.Millisecond)).Msg("sync pass done")
	if rev.Hash != a.lastRevision {
		a.lastRevision = rev.Hash
		a.cfg.Log.Info().Str("action", "sync").Str("hash", rev.Hash).Str("subject", rev.Subject).Str("status", rep.Summary()).Msg("revision applied")
	}
}

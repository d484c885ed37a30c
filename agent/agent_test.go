package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// fakeSyncer counts passes and returns a report that a test can change.
type fakeSyncer struct {
	mu       sync.Mutex
	passes   int
	readAlls int
	report   Report
}

func (f *fakeSyncer) Sync(ctx context.Context) *Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passes++
	r := f.report
	return &r
}

// ReadAll counts the requests to read every file (fullReader).
func (f *fakeSyncer) ReadAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readAlls++
}

func (f *fakeSyncer) readAllCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readAlls
}

func (f *fakeSyncer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passes
}

// freeAddr returns a loopback TCP address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type runningAgent struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

// startAgent runs an agent until the test ends; each of change adjusts it
// before it runs.
func startAgent(t *testing.T, cfg Config, s Syncer, ev EventWatcher, change ...func(*Agent)) *runningAgent {
	t.Helper()
	cfg.Log = zerolog.Nop()
	a := New(cfg, ev)
	for _, c := range change {
		c(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx, s) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop within 10 s")
		}
	})
	return r
}

func TestAgent_ready_after_first_pass_then_status_line(t *testing.T) {
	ch := listenNotify(t)
	s := &fakeSyncer{report: Report{Pods: []PodStatus{{Replica: "web", State: "Running"}}, Units: []UnitStatus{{ID: "bad.cue"}}}}
	startAgent(t, Config{ManifestDir: t.TempDir()}, s, nil)
	if got := nextNotify(t, ch); got != "STATUS=1 pod, 0 services, 1 invalid unit" {
		t.Fatalf("first notification %q", got)
	}
	if got := nextNotify(t, ch); got != "READY=1" {
		t.Fatalf("second notification %q, want READY=1", got)
	}
}

func TestAgent_manifest_change_syncs_within_two_seconds(t *testing.T) {
	dir := t.TempDir()
	s := &fakeSyncer{}
	startAgent(t, Config{ManifestDir: dir, KeepFile: keepCue}, s, nil)
	testenv.Eventually(t, 5*time.Second, testenv.True("the first pass", func() bool { return s.count() == 1 }))
	start := time.Now()
	write(t, filepath.Join(dir, "web.cue"), "pods: {}\n")
	testenv.Eventually(t, 5*time.Second, testenv.True("a second pass", func() bool { return s.count() == 2 }))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("sync %s after the write, want within 2 s", took)
	}
}

func TestAgent_SIGHUP_reloads_with_RELOADING_and_READY(t *testing.T) {
	ch := listenNotify(t)
	hup := make(chan os.Signal, 1)
	s := &fakeSyncer{}
	startAgent(t, Config{ManifestDir: t.TempDir(), Reload: hup}, s, nil)
	nextNotify(t, ch) // STATUS=
	nextNotify(t, ch) // READY=1
	hup <- syscall.SIGHUP
	if got := nextNotify(t, ch); !strings.HasPrefix(got, "RELOADING=1") {
		t.Fatalf("got %q, want RELOADING=1", got)
	}
	if got := nextNotify(t, ch); !strings.HasPrefix(got, "STATUS=") {
		t.Fatalf("got %q, want STATUS=", got)
	}
	if got := nextNotify(t, ch); got != "READY=1" {
		t.Fatalf("got %q, want READY=1 after the reload pass", got)
	}
	if s.count() != 2 {
		t.Fatalf("passes = %d, want 2", s.count())
	}
	if n := s.readAllCount(); n != 1 {
		t.Fatalf("the reload asked %d times to read every file, want once", n)
	}
}

func TestAgent_resync_reads_every_file_again(t *testing.T) {
	s := &fakeSyncer{}
	startAgent(t, Config{ManifestDir: t.TempDir(), Resync: 50 * time.Millisecond}, s, nil)
	testenv.Eventually(t, 5*time.Second, testenv.True("two resyncs", func() bool { return s.count() >= 3 }))
	if n := s.readAllCount(); n < 2 {
		t.Fatalf("%d passes asked to read every file %d times, want one per resync", s.count(), n)
	}
}

func TestAgent_status_socket_serves_latest_report_with_mode_0600(t *testing.T) {
	run := t.TempDir()
	s := &fakeSyncer{report: Report{Services: []ServiceStatus{{Name: "web", PortalIP: "10.96.0.20"}}}}
	startAgent(t, Config{ManifestDir: t.TempDir(), RunDir: run, ProxyMode: ProxyNftables}, s, nil)
	var rep *Report
	testenv.Eventually(t, 5*time.Second, func() error {
		var err error
		rep, err = FetchStatus(context.Background(), run)
		return err
	})
	if len(rep.Services) != 1 || rep.Services[0].PortalIP != "10.96.0.20" {
		t.Fatalf("status = %+v", rep)
	}
	if rep.ProxyMode != ProxyNftables {
		t.Fatalf("status says proxy mode %q, want the agent's %q", rep.ProxyMode, ProxyNftables)
	}
	fi, err := os.Stat(filepath.Join(run, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 600", perm)
	}
}

func TestFetchStatus_without_agent_is_ErrNoAgent(t *testing.T) {
	_, err := FetchStatus(context.Background(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), ErrNoAgent.Error()) {
		t.Fatalf("err = %v, want %v", err, ErrNoAgent)
	}
}

func TestAgent_metrics_and_readyz(t *testing.T) {
	addr := freeAddr(t)
	block := make(chan struct{})
	s := &blockingSyncer{release: block}
	startAgent(t, Config{ManifestDir: t.TempDir(), MetricsAddress: addr}, s, nil)
	testenv.Eventually(t, 5*time.Second, testenv.True("/healthz answers", func() bool { _, err := http.Get("http://" + addr + "/healthz"); return err == nil }))
	if code := get(t, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before first pass = %d, want 503", code)
	}
	close(block)
	testenv.Eventually(t, 5*time.Second, testenv.True("/readyz answers 200", func() bool { return get(t, "http://"+addr+"/readyz") == http.StatusOK }))
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"cuelet_sync_total 1", "cuelet_sync_duration_seconds_count 1", `cuelet_units{state="valid"} 0`, `cuelet_pods{state="Running"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

type blockingSyncer struct{ release chan struct{} }

func (b *blockingSyncer) Sync(ctx context.Context) *Report {
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return &Report{Pods: []PodStatus{{Replica: "web", State: "Running"}}}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// retry is a call the agent scheduled with its afterFunc.
type retry struct {
	after time.Duration
	f     func()
}

// retries stands in for time.AfterFunc: it hands every call the agent
// schedules to the test, which makes it when it likes, so the test sees
// the backoff without waiting it out.
type retries chan retry

func (r retries) afterFunc(d time.Duration, f func()) *time.Timer {
	r <- retry{d, f}
	return nil // the agent does not stop its retries
}

func TestAgent_podman_down_retries_on_its_own_with_a_doubling_delay_up_to_30s(t *testing.T) {
	s := &fakeSyncer{report: Report{PodmanDown: true, Errors: ErrorList{errors.New("cannot reach podman")}}}
	scheduled := make(retries, 1)
	// No resync ticker, no events: only the backoff retry can give
	// further passes.
	startAgent(t, Config{ManifestDir: t.TempDir(), Quiet: time.Millisecond}, s, nil, func(a *Agent) { a.afterFunc = scheduled.afterFunc })
	for pass, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
		var r retry
		select {
		case r = <-scheduled:
		case <-time.After(10 * time.Second):
			t.Fatalf("no retry scheduled after pass %d", pass+1)
		}
		if r.after != want*time.Second {
			t.Fatalf("retry after pass %d in %s, want %s", pass+1, r.after, want*time.Second)
		}
		if got := s.count(); got != pass+1 {
			t.Fatalf("%d passes before retry %d, want %d", got, pass+1, pass+1)
		}
		r.f()
	}
}

// eventSource delivers one event per send on ch.
type eventSource struct {
	ch       chan struct{}
	connects atomic.Int32
}

func (e *eventSource) WatchEvents(ctx context.Context, changed func()) error {
	e.connects.Add(1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-e.ch:
			if !ok {
				return io.EOF
			}
			changed()
		}
	}
}

func TestAgent_podman_event_triggers_a_sync(t *testing.T) {
	ev := &eventSource{ch: make(chan struct{})}
	s := &fakeSyncer{}
	startAgent(t, Config{ManifestDir: t.TempDir()}, s, ev)
	testenv.Eventually(t, 5*time.Second, testenv.True("the first pass and an event connection", func() bool { return s.count() == 1 && ev.connects.Load() == 1 }))
	ev.ch <- struct{}{}
	testenv.Eventually(t, 5*time.Second, testenv.True("a second pass", func() bool { return s.count() == 2 }))
}

func TestAgent_stops_promptly_when_cancelled(t *testing.T) {
	r := startAgent(t, Config{ManifestDir: t.TempDir(), RunDir: t.TempDir(), MetricsAddress: freeAddr(t), Resync: time.Second}, &fakeSyncer{}, nil)
	time.Sleep(200 * time.Millisecond) // let every loop start
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("stop took %s", took)
	}
}

// progressSyncer publishes a partial report, then blocks until released.
type progressSyncer struct {
	agent   atomic.Pointer[Agent]
	release chan struct{}
}

func (p *progressSyncer) Sync(ctx context.Context) *Report {
	for p.agent.Load() == nil { // set right after the agent starts
		time.Sleep(time.Millisecond)
	}
	p.agent.Load().Progress(&Report{Pods: []PodStatus{{Replica: "web", State: "Running"}}})
	select {
	case <-p.release:
	case <-ctx.Done():
	}
	return &Report{Pods: []PodStatus{{Replica: "web", State: "Running"}, {Replica: "web-1", State: "Running"}}}
}

func TestAgent_long_first_pass_serves_its_partial_report_but_is_not_ready(t *testing.T) {
	run, addr := t.TempDir(), freeAddr(t)
	s := &progressSyncer{release: make(chan struct{})}
	r := startAgent(t, Config{ManifestDir: t.TempDir(), RunDir: run, MetricsAddress: addr, ProxyMode: ProxyUserspace}, s, nil)
	s.agent.Store(r.agent)
	var rep *Report
	testenv.Eventually(t, 5*time.Second, func() error {
		var err error
		rep, err = FetchStatus(context.Background(), run)
		return err
	})
	if !rep.Partial || len(rep.Pods) != 1 || rep.ProxyMode != ProxyUserspace {
		t.Fatalf("status during the first pass = %+v, want the partial report with the proxy mode", rep)
	}
	if code := get(t, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during the first pass = %d, want 503", code)
	}
	close(s.release)
	testenv.Eventually(t, 5*time.Second, testenv.True("a finished report", func() bool {
		rep, _ = FetchStatus(context.Background(), run)
		return rep != nil && !rep.Partial
	}))
	if len(rep.Pods) != 2 {
		t.Fatalf("status after the first pass = %+v", rep)
	}
	// A later pass's progress does not replace a finished report.
	r.agent.Progress(&Report{})
	if rep, _ = FetchStatus(context.Background(), run); rep.Partial {
		t.Fatal("a partial report replaced a finished one")
	}
}

func TestAgent_stuck_pass_stops_watchdog_pings_and_fails_healthz(t *testing.T) {
	ch := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000") // a ping every 50 ms
	addr := freeAddr(t)
	s := &blockingSyncer{release: make(chan struct{})}
	r := startAgent(t, Config{ManifestDir: t.TempDir(), MetricsAddress: addr, StuckAfter: 500 * time.Millisecond}, s, nil)
	if got := nextNotify(t, ch); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want a watchdog ping while the first pass is young", got)
	}
	testenv.Eventually(t, 5*time.Second, testenv.True("/healthz answers 503", func() bool { return get(t, "http://"+addr+"/healthz") == http.StatusServiceUnavailable }))
	// Pings in flight when the pass became stuck may still come. The
	// watchdog runs on one goroutine and notes the stuck loop in the call
	// after its last ping, so once it has, every ping it sent is in the
	// socket; a marker sent after that comes after them all. From there,
	// none for several intervals.
	testenv.Eventually(t, 5*time.Second, testenv.True("the watchdog saw the stuck loop", r.agent.stuckLogged.Load))
	flushNotify(t, ch)
	select {
	case got := <-ch:
		t.Fatalf("got %q from an agent whose pass is stuck", got)
	case <-time.After(300 * time.Millisecond):
	}
	close(s.release)
	for {
		if got := nextNotify(t, ch); got == "WATCHDOG=1" {
			break // pings again once the loop moves
		}
	}
	if code := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after the pass = %d", code)
	}
}

func TestAgent_logs_the_pass_duration_with_its_unit(t *testing.T) {
	var logs strings.Builder
	a := New(Config{ManifestDir: t.TempDir(), Log: zerolog.New(&logs)}, nil)
	a.sync(context.Background(), &fakeSyncer{})
	// A Go duration string ("0s", "2.319s"), never zerolog's bare
	// milliseconds (2318.647575).
	if !regexp.MustCompile(`"took":"(\d+h)?(\d+m)?[\d.]+(ms|s)"`).MatchString(logs.String()) {
		t.Fatalf("ready line without a duration in units:\n%s", logs.String())
	}
}

package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

const within = 10 * time.Second

// fast is a probe timing for tests: short periods, generous deadlines
// elsewhere.
func fast(p Probe) Probe {
	p.Period = 20 * time.Millisecond
	if p.Timeout == 0 {
		p.Timeout = 500 * time.Millisecond
	}
	return p
}

// recorder keeps every transition, with the probe count at that moment.
type recorder struct {
	mu    sync.Mutex
	calls func() int
	seen  []transition
}

type transition struct {
	ready bool
	probe int // number of probes run when the transition happened
}

func (r *recorder) onChange(ready bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	if r.calls != nil {
		n = r.calls()
	}
	r.seen = append(r.seen, transition{ready, n})
}

func (r *recorder) transitions() []transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transition(nil), r.seen...)
}

func run(t *testing.T, cfg Config) *Worker {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(within):
			t.Error("Run did not return after cancel")
		}
	})
	return w
}

// scriptedExec answers exec probes from a script of exit codes; after the
// script it repeats the last one.
type scriptedExec struct {
	mu     sync.Mutex
	script []int
	calls  int
	got    []string
}

func (s *scriptedExec) Exec(_ context.Context, container string, cmd []string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := s.script[min(s.calls, len(s.script)-1)]
	s.calls++
	s.got = append(s.got, container+":"+cmd[0])
	return code, nil
}

func (s *scriptedExec) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func TestThresholds(t *testing.T) {
	tests := []struct {
		name    string
		success int
		failure int
		initial bool  // InitialReady
		script  []int // exit codes, the last one repeats
		want    []transition
	}{
		{
			name:   "first_success_makes_ready_with_the_default_threshold",
			script: []int{1, 1, 0},
			want:   []transition{{true, 3}},
		},
		{
			name:   "three_failures_in_a_row_make_not_ready_by_default",
			script: []int{0, 1, 1, 0, 1, 1, 1},
			want:   []transition{{true, 1}, {false, 7}},
		},
		{
			name:    "success_threshold_needs_successes_in_a_row",
			success: 2,
			script:  []int{0, 1, 0, 0},
			want:    []transition{{true, 4}},
		},
		{
			name:    "failure_threshold_one_drops_at_the_first_failure",
			failure: 1,
			script:  []int{0, 0, 1, 0},
			want:    []transition{{true, 1}, {false, 3}, {true, 4}},
		},
		{
			name:   "failures_before_the_first_success_change_nothing",
			script: []int{1, 1, 1, 1, 1, 1},
		},
		{
			name:    "a_worker_started_ready_stays_ready_while_it_passes",
			initial: true,
			script:  []int{0, 1, 0},
		},
		{
			name:    "a_worker_started_ready_leaves_after_the_failure_threshold",
			initial: true,
			script:  []int{1, 1, 1, 0},
			want:    []transition{{false, 3}, {true, 4}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &scriptedExec{script: tt.script}
			rec := &recorder{calls: ex.count}
			run(t, Config{
				Probe: fast(Probe{
					Exec:             &ExecAction{Command: []string{"true"}},
					SuccessThreshold: tt.success,
					FailureThreshold: tt.failure,
				}),
				Target:       Target{Container: "web-app"},
				Execer:       ex,
				OnChange:     rec.onChange,
				InitialReady: tt.initial,
			})
			// Run the script and a few more probes past its end.
			testenv.Eventually(t, within, testenv.True("script played", func() bool { return ex.count() >= len(tt.script)+3 }))
			got := rec.transitions()
			if len(got) != len(tt.want) {
				t.Fatalf("transitions = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("transitions = %v, want %v", got, tt.want)
				}
			}
			if ex.got[0] != "web-app:true" {
				t.Errorf("exec got %q, want the target container and the command", ex.got[0])
			}
		})
	}
}

func TestInitialDelayHoldsTheFirstProbe(t *testing.T) {
	ex := &scriptedExec{script: []int{0}}
	start := time.Now()
	var first atomic.Int64
	w := run(t, Config{
		Probe:  fast(Probe{Exec: &ExecAction{Command: []string{"true"}}, InitialDelay: 200 * time.Millisecond}),
		Execer: ex,
		OnChange: func(bool) {
			first.CompareAndSwap(0, int64(time.Since(start)))
		},
	})
	// Wait for the callback itself: the worker reports Ready before it
	// calls OnChange, so Ready alone may come before first is set.
	testenv.Eventually(t, within, testenv.True("OnChange called", func() bool { return first.Load() != 0 }))
	if !w.Ready() {
		t.Fatal("OnChange called but the worker is not ready")
	}
	if d := time.Duration(first.Load()); d < 200*time.Millisecond {
		t.Fatalf("ready after %v, before the initial delay of 200ms", d)
	}
}

func TestTCPProbeFollowsARealListener(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	rec := &recorder{}
	w := run(t, Config{
		Probe:    fast(Probe{TCPSocket: &TCPSocketAction{Port: int(addr.Port())}}),
		Target:   Target{IP: addr.Addr()},
		OnChange: rec.onChange,
	})
	testenv.Eventually(t, within, testenv.True("ready while listening", w.Ready))
	ln.Close()
	// Wait for the second transition, not for Ready: the worker flips
	// Ready before it calls OnChange.
	testenv.Eventually(t, within, testenv.True("a second transition once the listener is gone", func() bool { return len(rec.transitions()) >= 2 }))
	if w.Ready() {
		t.Fatal("ready once the listener is gone")
	}
	if got := rec.transitions(); len(got) != 2 || !got[0].ready || got[1].ready {
		t.Fatalf("transitions = %v, want ready then not ready", got)
	}
}

func TestHTTPProbe_is_ready_on_success_and_redirects_and_not_on_errors_or_timeouts(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusOK)
	var slow atomic.Bool
	var gotPath, gotUA atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath.Store(r.URL.Path)
		gotUA.Store(r.UserAgent())
		if slow.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return
		}
		if s := int(status.Load()); s >= 300 && s < 400 {
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", s)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())

	w := run(t, Config{
		Probe: fast(Probe{
			HTTPGet: &HTTPGetAction{Path: "healthz", Port: int(addr.Port())},
			Timeout: 100 * time.Millisecond,
		}),
		Target: Target{IP: addr.Addr()},
	})
	testenv.Eventually(t, within, testenv.True("ready on 200", w.Ready))
	if gotPath.Load() != "/healthz" || gotUA.Load() != "cuelet-probe/1" {
		t.Errorf("request path %v, user agent %v", gotPath.Load(), gotUA.Load())
	}

	status.Store(http.StatusServiceUnavailable)
	testenv.Eventually(t, within, testenv.True("not ready on 503", func() bool { return !w.Ready() }))

	status.Store(http.StatusFound)
	testenv.Eventually(t, within, testenv.True("ready on a redirect, which is not followed", w.Ready))

	slow.Store(true)
	testenv.Eventually(t, within, testenv.True("not ready when answers take longer than the timeout", func() bool { return !w.Ready() }))
}

func TestNewRejectsBadProbes(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no_action", Config{Probe: Probe{}}},
		{"two_actions", Config{Probe: Probe{TCPSocket: &TCPSocketAction{Port: 1}, HTTPGet: &HTTPGetAction{Port: 1}}, Target: Target{IP: ip}}},
		{"exec_without_execer", Config{Probe: Probe{Exec: &ExecAction{Command: []string{"true"}}}}},
		{"exec_without_command", Config{Probe: Probe{Exec: &ExecAction{}}, Execer: &scriptedExec{}}},
		{"tcp_without_target_ip", Config{Probe: Probe{TCPSocket: &TCPSocketAction{Port: 80}}}},
		{"http_port_zero", Config{Probe: Probe{HTTPGet: &HTTPGetAction{Port: 0}}, Target: Target{IP: ip}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

// errExec fails to run anything.
type errExec struct{}

func (errExec) Exec(context.Context, string, []string) (int, error) {
	return 0, errors.New("no such container")
}

func TestExecThatCannotRunIsAFailure(t *testing.T) {
	w := run(t, Config{Probe: fast(Probe{Exec: &ExecAction{Command: []string{"true"}}}), Execer: errExec{}})
	err := w.check(context.Background())
	if err == nil {
		t.Fatal("check succeeded, want the exec error")
	}
}

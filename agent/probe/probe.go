package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of Probe fields left zero (SPEC §7).
const (
	DefaultPeriod           = 10 * time.Second
	DefaultTimeout          = time.Second
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
)

// Probe is a readinessProbe with durations instead of seconds. Exactly one
// of Exec, TCPSocket and HTTPGet is set.
type Probe struct {
	Exec      *ExecAction
	TCPSocket *TCPSocketAction
	HTTPGet   *HTTPGetAction

	InitialDelay     time.Duration
	Period           time.Duration // 0 means DefaultPeriod
	Timeout          time.Duration // 0 means DefaultTimeout
	SuccessThreshold int           // 0 means DefaultSuccessThreshold
	FailureThreshold int           // 0 means DefaultFailureThreshold
}

// ExecAction runs a command in the container; exit code 0 is success.
type ExecAction struct {
	Command []string
}

// TCPSocketAction opens a TCP connection to the target's IP and Port.
type TCPSocketAction struct {
	Port int
}

// HTTPGetAction sends GET http://<target IP>:<Port><Path>.
type HTTPGetAction struct {
	Path string
	Port int
}

// Target is what a probe checks.
type Target struct {
	IP        netip.Addr // the pod's IP, for tcpSocket and httpGet
	Container string     // the container's name or ID, for exec
}

// Execer runs a command inside a container, for exec probes. It returns
// the command's exit code; an error means the command could not be run
// (which counts as a failed probe too).
type Execer interface {
	Exec(ctx context.Context, container string, command []string) (exitCode int, err error)
}

// Config configures a Worker.
type Config struct {
	Probe  Probe
	Target Target
	Execer Execer // needed for exec probes
	// OnChange is called, from the worker's goroutine, with the new state
	// on every transition (the first one is to ready). It should not block
	// for long: the next probe waits for it.
	OnChange func(ready bool)
	// InitialReady starts the worker ready rather than unready: for a
	// container an earlier agent saw pass, so that restarting the agent
	// does not take it out of its services until its first probe (the
	// kernel data path served it all along). It leaves, as any ready one,
	// after FailureThreshold failures.
	InitialReady bool
	Logger       zerolog.Logger
}

// Worker probes one container.
type Worker struct {
	cfg    Config
	probe  Probe
	check  func(context.Context) error
	ready  atomic.Bool
	client *http.Client
}

// New validates the probe and returns a Worker; it probes nothing before
// Run.
func New(cfg Config) (*Worker, error) {
	p := cfg.Probe
	p.Period = cmp.Or(p.Period, DefaultPeriod)
	p.Timeout = cmp.Or(p.Timeout, DefaultTimeout)
	p.SuccessThreshold = cmp.Or(p.SuccessThreshold, DefaultSuccessThreshold)
	p.FailureThreshold = cmp.Or(p.FailureThreshold, DefaultFailureThreshold)
	if p.Period < 0 || p.Timeout < 0 || p.InitialDelay < 0 || p.SuccessThreshold < 0 || p.FailureThreshold < 0 {
		return nil, errors.New("probe: negative durations or thresholds")
	}
	w := &Worker{cfg: cfg, probe: p}
	w.ready.Store(cfg.InitialReady)
	n := 0
	if p.Exec != nil {
		n++
		if len(p.Exec.Command) == 0 {
			return nil, errors.New("probe: exec without a command")
		}
		if cfg.Execer == nil {
			return nil, errors.New("probe: exec probe without an Execer")
		}
		w.check = w.exec
	}
	if p.TCPSocket != nil {
		n++
		if err := checkTarget(cfg.Target.IP, p.TCPSocket.Port); err != nil {
			return nil, err
		}
		w.check = w.tcp
	}
	if p.HTTPGet != nil {
		n++
		if err := checkTarget(cfg.Target.IP, p.HTTPGet.Port); err != nil {
			return nil, err
		}
		w.client = &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			// A redirect is an answer: 3xx counts as success without
			// following it anywhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		w.check = w.http
	}
	if n != 1 {
		return nil, fmt.Errorf("probe: need exactly one of exec, tcpSocket, httpGet, got %d", n)
	}
	return w, nil
}

func checkTarget(ip netip.Addr, port int) error {
	if !ip.IsValid() {
		return errors.New("probe: no target IP")
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("probe: port %d out of range", port)
	}
	return nil
}

// Ready reports the current state.
func (w *Worker) Ready() bool { return w.ready.Load() }

// Run probes until ctx ends, and returns nil then.
func (w *Worker) Run(ctx context.Context) error {
	if d := w.probe.InitialDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	// A fixed-rate ticker, not a sleep after each probe: slow probes must
	// not stretch the time it takes to notice a failure.
	tick := time.NewTicker(w.probe.Period)
	defer tick.Stop()
	var successes, failures int
	for {
		pctx, cancel := context.WithTimeout(ctx, w.probe.Timeout)
		err := w.check(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			successes, failures = successes+1, 0
			if !w.ready.Load() && successes >= w.probe.SuccessThreshold {
				w.set(true, nil)
			}
		} else {
			successes, failures = 0, failures+1
			w.cfg.Logger.Debug().Str("action", "probe").Err(err).Int("failures", failures).Msg("readiness probe failed")
			if w.ready.Load() && failures >= w.probe.FailureThreshold {
				w.set(false, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (w *Worker) set(ready bool, err error) {
	w.ready.Store(ready)
	ev := w.cfg.Logger.Info()
	if !ready {
		ev = w.cfg.Logger.Warn().Err(err)
	}
	ev.Str("action", "readiness").Bool("ready", ready).Msg("readiness changed")
	if w.cfg.OnChange != nil {
		w.cfg.OnChange(ready)
	}
}

func (w *Worker) exec(ctx context.Context) error {
	code, err := w.cfg.Execer.Exec(ctx, w.cfg.Target.Container, w.probe.Exec.Command)
	if err != nil {
		return fmt.Errorf("exec probe %q: %w", w.probe.Exec.Command, err)
	}
	if code != 0 {
		return fmt.Errorf("exec probe %q: exit code %d", w.probe.Exec.Command, code)
	}
	return nil
}

func (w *Worker) tcp(ctx context.Context) error {
	addr := netip.AddrPortFrom(w.cfg.Target.IP, uint16(w.probe.TCPSocket.Port))
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("tcp probe %s: %w", addr, err)
	}
	return c.Close()
}

func (w *Worker) http(ctx context.Context) error {
	path := w.probe.HTTPGet.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	host := net.JoinHostPort(w.cfg.Target.IP.String(), strconv.Itoa(w.probe.HTTPGet.Port))
	url := "http://" + host + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("http probe %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "cuelet-probe/1")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("http probe %s: %w", url, err)
	}
	// Read a little so the server is not cut off mid-answer, never all of
	// a large body.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http probe %s: status %d", url, resp.StatusCode)
	}
	return nil
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"
)

// SocketName is the status socket's name under the run dir.
const SocketName = "cuelet.sock"

// ErrNoAgent means nothing answers on the status socket.
var ErrNoAgent = errors.New("no cuelet agent answers")

// serveStatus serves the latest report on <runDir>/cuelet.sock until ctx
// ends. The socket is 0600: the report names every pod and service.
func serveStatus(ctx context.Context, runDir string, latest func() *Report) error {
	sock := filepath.Join(runDir, SocketName)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	ln, err := listenPrivate(sock)
	if err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		rep := latest()
		if rep == nil {
			http.Error(w, "first sync pass not finished yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	// Go's profiles, for a node whose agent uses more memory or CPU than
	// it should: `curl --unix-socket <run-dir>/cuelet.sock
	// http://cuelet/debug/pprof/heap > heap.out`. Here rather than on the
	// metrics address: the socket is root's alone.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return serve(ctx, ln, mux, func() { os.Remove(sock) })
}

// listenPrivate listens on the unix socket path with mode 0600. bind(2)
// creates the socket with the process umask, and the umask is the whole
// process's: setting it around the bind would change the mode of every
// file other goroutines create meanwhile. So the socket is bound in a
// private (0700) folder beside path, where nobody else can reach it, made
// 0600 there, and renamed into place. The rename also replaces a socket
// left by an agent that was killed.
func listenPrivate(path string) (net.Listener, error) {
	// Short names: the temporary path must fit in sun_path (108 bytes)
	// wherever path does.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The listener would unlink the name it was bound to, which is gone
	// by then; the caller removes path.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serve runs an HTTP server on ln until ctx ends, then shuts it down
// within a bounded time of its own: ctx is already cancelled by then.
func serve(ctx context.Context, ln net.Listener, h http.Handler, cleanup func()) error {
	// IdleTimeout: a client that keeps its connection open and never
	// comes back must not hold the agent's buffers (8 KB) and goroutine
	// for as long as the agent runs.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		cleanup()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	cleanup()
	return err
}

// FetchStatus asks the agent on <runDir>/cuelet.sock for its latest report.
func FetchStatus(ctx context.Context, runDir string) (*Report, error) {
	sock := filepath.Join(runDir, SocketName)
	// One request per connection: the transport is made for this call
	// and dropped after it, so a connection kept alive for a next request
	// would stay open, in this process and in the agent, until the caller
	// exits. A test polling the status leaked about 1,900 of them.
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://cuelet/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w on %s: %v", ErrNoAgent, sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent on %s answered %s", sock, resp.Status)
	}
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read status from %s: %w", sock, err)
	}
	return &rep, nil
}

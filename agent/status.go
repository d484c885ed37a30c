package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
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
	// A socket left by an agent that was killed would make Listen fail.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("status socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
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
	return serve(ctx, ln, mux, func() { os.Remove(sock) })
}

// serve runs an HTTP server on ln until ctx ends, then shuts it down
// within a bounded time of its own: ctx is already cancelled by then.
func serve(ctx context.Context, ln net.Listener, h http.Handler, cleanup func()) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
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
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
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

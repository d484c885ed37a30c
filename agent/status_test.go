package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// The status socket's mode must not come from changing the process umask:
// other goroutines (env files, state files, the proxy) create files at the
// same time and would get that mode too.
func TestListenPrivate_makes_a_0600_socket_without_touching_the_modes_of_other_files(t *testing.T) {
	run, other := t.TempDir(), t.TempDir()
	fileMode := func(name string) os.FileMode {
		p := filepath.Join(other, name)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			t.Error(err)
			return 0
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			return 0
		}
		os.Remove(p)
		return fi.Mode().Perm()
	}
	want := fileMode("before")

	var (
		stop    atomic.Bool
		wrong   atomic.Int64
		created atomic.Int64
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if fileMode("during") != want {
				wrong.Add(1)
			}
			created.Add(1)
		}
	}()
	sock := filepath.Join(run, SocketName)
	for i := 0; i < 300 || created.Load() < 300; i++ {
		ln, err := listenPrivate(sock)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
		}
		ln.Close()
	}
	stop.Store(true)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of %d files created by another goroutine did not get mode %v", n, created.Load(), want)
	}
	if got := fileMode("after"); got != want {
		t.Errorf("a file created after serving has mode %v, want %v: the process umask changed", got, want)
	}
	entries, err := os.ReadDir(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != SocketName {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("run dir holds %q, want only %s", names, SocketName)
	}
}

// The status socket serves Go's profiles, so that a node's agent that
// uses too much memory can be looked into without restarting it.
func TestStatusSocket_serves_a_heap_profile(t *testing.T) {
	run := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveStatus(ctx, run, func() *Report { return nil }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(run, SocketName))
		},
	}}
	var resp *http.Response
	testenv.Eventually(t, time.Minute, func() error {
		var err error
		resp, err = client.Get("http://cuelet/debug/pprof/heap")
		return err
	})
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	// A profile is gzipped protobuf.
	if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Fatalf("not a gzipped profile: %q", body[:min(len(body), 40)])
	}
}

// FetchStatus must not leave a connection open per call: a program that
// polls the status (the end-to-end tests do, every few milliseconds) held
// one open connection per call in itself and in the agent, 1,900 after
// nine minutes, with the agent's buffers for each.
func TestFetchStatus_leaves_no_connection_open(t *testing.T) {
	run := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveStatus(ctx, run, func() *Report { return &Report{} }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.Eventually(t, time.Minute, func() error {
		_, err := FetchStatus(ctx, run)
		return err
	})
	before := openFiles(t)
	const calls = 50
	for range calls {
		if _, err := FetchStatus(ctx, run); err != nil {
			t.Fatal(err)
		}
	}
	// Both ends close at once, the agent's just after it answered.
	testenv.Eventually(t, time.Minute, func() error {
		if n := openFiles(t); n > before+5 {
			return fmt.Errorf("%d files open after %d calls, %d before", n, calls, before)
		}
		return nil
	})
}

func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

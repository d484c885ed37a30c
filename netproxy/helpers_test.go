package netproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// within is the generous deadline for anything a test waits for; the
// proxy is expected to be much faster, but a loaded 2-core CI box is not.
const within = 10 * time.Second

var loopback = netip.MustParseAddr("127.0.0.1")

// startProxy runs a proxy until the test ends.
func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if testing.Verbose() {
		cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Idle workers leave soon, so goroutine counts settle fast.
	p.workerIdle = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(within):
			t.Errorf("Run did not return within %v of cancel", within)
		}
	})
	return p
}

func mustUpdate(t testing.TB, p *Proxy, services ...Service) {
	t.Helper()
	if errs := p.Update(services); errs != nil {
		t.Fatalf("Update: %v", errs)
	}
}

// freePort returns a port that is free on 0.0.0.0 for TCP and UDP right
// now (the kernel may hand it out again later, but not soon).
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", "0.0.0.0:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

// backend is a TCP test server on 127.0.0.1. Each connection gets the
// backend's name and a newline first (when name is set), then an echo.
type backend struct {
	name string
	addr netip.AddrPort
	ln   net.Listener

	mu    sync.Mutex
	conns []net.Conn
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().(*net.TCPAddr).AddrPort(), ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if b.name != "" {
					if _, err := c.Write([]byte(b.name + "\n")); err != nil {
						return
					}
				}
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return b
}

// deadAddr returns a loopback address where nothing listens: connecting
// to it is refused.
func deadAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return a
}

func dial(t *testing.T, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr.String(), within)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(within))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// hello dials addr and returns the name line of the backend that answered.
func hello(t *testing.T, addr netip.AddrPort) string {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	line := make([]byte, 0, 16)
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("read name from %s: %v", addr, err)
		}
		if b[0] == '\n' {
			return string(line)
		}
		line = append(line, b[0])
	}
}

// readsClosed reports whether c was closed or reset by the peer within d.
func readsClosed(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		return nil // EOF or reset
	}
}

// fakeClock is a settable clock for affinity tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func itoa(n int) string { return strconv.Itoa(n) }

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

package netproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

func svc(name string, port int, eps ...netip.AddrPort) Service {
	return Service{
		Name:     name,
		PortalIP: loopback,
		Ports:    []Port{{Name: "p", Protocol: "TCP", Port: port, Endpoints: eps}},
	}
}

func portal(port int) netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(port)) }

func TestTCP_echoes_through_a_portal(t *testing.T) {
	b := startBackend(t, "")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("web", port, b.addr))

	c := dial(t, portal(port))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "ping" {
		t.Fatalf("echo = %q, want ping", got)
	}
}

func TestTCPBulkIsCopiedByteForByteAndCounted(t *testing.T) {
	b := startBackend(t, "")
	reg := prometheus.NewRegistry()
	p := startProxy(t, Config{Registerer: reg})
	port := freePort(t)
	mustUpdate(t, p, svc("bulk", port, b.addr))

	const size = 24 << 20
	payload := make([]byte, size)
	rand.Read(payload)
	c := dial(t, portal(port))
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), sha256Sum(payload)) {
		t.Fatalf("echoed %d bytes with another hash, want %d identical bytes", n, size)
	}
	c.Close()

	bytesTo := func(dir string) float64 {
		return testutil.ToFloat64(p.metrics.bytes.WithLabelValues("bulk", "p", dir))
	}
	testenv.Eventually(t, within, testenv.True("bytes counted both ways", func() bool {
		return bytesTo(DirectionToEndpoint) == size && bytesTo(DirectionToClient) == size
	}))
	if got := testutil.ToFloat64(p.metrics.conns.WithLabelValues("bulk", "p")); got != 1 {
		t.Errorf("cuelet_proxy_connections_total = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "cuelet_proxy_bytes_total"); err != nil || n != 2 {
		t.Errorf("registry has %d cuelet_proxy_bytes_total series (err %v), want 2", n, err)
	}
}

// resetOrClosed connects to addr and returns nil when the connection is
// reset or closed by the proxy, during connect (the reset can beat connect's
// return on loopback) or on the first read.
func resetOrClosed(addr netip.AddrPort) error {
	c, err := net.DialTimeout("tcp4", addr.String(), within)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	return readsClosed(c, within)
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestTCPHalfClosePropagatesBothWays(t *testing.T) {
	// The backend reads until EOF, then answers with what it counted and
	// closes: this only works when the client's CloseWrite reaches it.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		c.Write([]byte(strings.Repeat("x", int(n))))
	}()
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("half", port, ln.Addr().(*net.TCPAddr).AddrPort()))

	c := dial(t, portal(port))
	c.Write([]byte("hello"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(got) != "xxxxx" {
		t.Fatalf("answer = %q, want xxxxx (the backend saw EOF after 5 bytes and its EOF came back)", got)
	}
}

func TestTCPWithoutEndpointsResetsTheClientAtOnce(t *testing.T) {
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("empty", port))

	start := time.Now()
	if err := resetOrClosed(portal(port)); err != nil {
		t.Fatalf("connection without endpoints: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("closed after %v, want well under a second", d)
	}
}

func TestTCPDialFailureMovesOnToTheNextEndpoint(t *testing.T) {
	live := startBackend(t, "live")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("flaky", port, deadAddr(t), live.addr, deadAddr(t)))

	for i := range 6 {
		if got := hello(t, portal(port)); got != "live" {
			t.Fatalf("connection %d reached %q, want live", i, got)
		}
	}
}

// silentAddr returns a loopback address whose listener never answers a
// new connection: its accept queue (backlog 0) is full, and the kernel
// drops the SYNs, so a connect hangs as with a host that is gone.
func silentAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(loopback, uint16(sa.(*unix.SockaddrInet4).Port))
	dial(t, addr) // takes the one place in the queue
	return addr
}

func TestTCPDialTimeoutMovesOnToTheNextEndpoint(t *testing.T) {
	live := startBackend(t, "live")
	const timeout = 200 * time.Millisecond
	p := startProxy(t, Config{DialTimeout: timeout})
	port := freePort(t)
	mustUpdate(t, p, svc("slow", port, silentAddr(t), live.addr))

	start := time.Now()
	if got := hello(t, portal(port)); got != "live" {
		t.Fatalf("connection reached %q, want live", got)
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("reached the second endpoint after %v, before the dial timeout %v", d, timeout)
	}
}

func TestTCPAllEndpointsDeadResetsTheClient(t *testing.T) {
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("dead", port, deadAddr(t), deadAddr(t)))
	if err := resetOrClosed(portal(port)); err != nil {
		t.Fatalf("connection with dead endpoints: %v", err)
	}
}

func TestTCPRoundRobinFollowsTheEndpointOrder(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("rr", port, a.addr, b.addr, c.addr))

	var got []string
	for range 7 {
		got = append(got, hello(t, portal(port)))
	}
	if strings.Join(got, "") != "abcabca" {
		t.Fatalf("backends in order %v, want a b c a b c a", got)
	}
}

func TestClientIPAffinityStaysUntilTheTimeout(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := startProxy(t, Config{Now: clock.Now})
	port := freePort(t)
	s := svc("sticky", port, a.addr, b.addr)
	s.SessionAffinity = AffinityClientIP
	s.AffinityTimeout = time.Minute
	mustUpdate(t, p, s)

	first := hello(t, portal(port))
	for i := range 4 {
		clock.Advance(59 * time.Second) // each use renews the stickiness
		if got := hello(t, portal(port)); got != first {
			t.Fatalf("connection %d went to %q, want %q (sticky)", i, got, first)
		}
	}
	clock.Advance(time.Minute)
	if got := hello(t, portal(port)); got == first {
		t.Fatalf("after the timeout the client stayed on %q, want the next endpoint", got)
	}
}

func TestRemovedEndpointGetsNoNewConnectionsAndItsConnectionsDrain(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	const drain = 500 * time.Millisecond
	p := startProxy(t, Config{DrainTimeout: drain})
	port := freePort(t)
	mustUpdate(t, p, svc("web", port, a.addr, b.addr))

	readName := func(c net.Conn) string {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		return string(buf[:1])
	}
	// One after the other: two connections accepted at once may be
	// dispatched in either order.
	toA := dial(t, portal(port))
	nameA := readName(toA)
	toB := dial(t, portal(port))
	if nameB := readName(toB); nameA != "a" || nameB != "b" {
		t.Fatalf("first two connections went to %s and %s, want a and b", nameA, nameB)
	}

	removed := time.Now()
	mustUpdate(t, p, svc("web", port, b.addr))
	// The connection to the removed endpoint may finish what it does...
	toA.Write([]byte("draining"))
	got := make([]byte, 8)
	if _, err := io.ReadFull(toA, got); err != nil || string(got) != "draining" {
		if time.Since(removed) < drain {
			t.Fatalf("connection to the removed endpoint right after the removal: %q, %v", got, err)
		}
	}
	// ...and is closed after the drain timeout.
	if err := readsClosed(toA, within); err != nil {
		t.Fatalf("connection to the removed endpoint stayed open: %v", err)
	}
	if d := time.Since(removed); d < drain {
		t.Fatalf("connection to the removed endpoint closed after %v, before the drain timeout %v", d, drain)
	}
	// The connection to b is untouched.
	toB.Write([]byte("still"))
	got = make([]byte, 5)
	if _, err := io.ReadFull(toB, got); err != nil || string(got) != "still" {
		t.Fatalf("connection to the kept endpoint: %q, %v", got, err)
	}
	for i := range 4 {
		if got := hello(t, portal(port)); got != "b" {
			t.Fatalf("new connection %d went to %q, want b", i, got)
		}
	}
}

// An endpoint that leaves the rotation while a connection to it is being
// set up (picked and dialed, not yet relaying) must not cost the client
// its connection: nothing reached the endpoint yet, so the connection
// goes to an endpoint that is still in the rotation. (cmd/cuelet/cli's
// TestServicesReplicaLeavesTheRotation saw "connection reset by peer"
// here under load, when a replica failed readiness.)
func TestConnectionWhoseEndpointLeavesWhileDialingGoesToAnother(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, Config{})
	port := freePort(t)
	var once sync.Once
	// Set before the listener starts, which orders it before its use.
	p.testHookDialed = func(ep netip.AddrPort) {
		// Between the dial and the start of the relay: a leaves.
		once.Do(func() {
			if ep != a.addr {
				t.Errorf("first connection dialed %s, want a at %s", ep, a.addr)
			}
			mustUpdate(t, p, svc("web", port, b.addr))
		})
	}
	mustUpdate(t, p, svc("web", port, a.addr, b.addr))
	if got := hello(t, portal(port)); got != "b" {
		t.Fatalf("connection reached %q, want b", got)
	}
}

func TestUpdateKeepsUnchangedListenersAndConnections(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, Config{})
	port, other := freePort(t), freePort(t)
	mustUpdate(t, p, svc("web", port, a.addr))
	before := p.listeners[listenerKey{protocol: "TCP", addr: portal(port)}]

	c := dial(t, portal(port))
	mustUpdate(t, p, svc("web", port, a.addr, b.addr), svc("new", other, b.addr))
	if after := p.listeners[listenerKey{protocol: "TCP", addr: portal(port)}]; after != before {
		t.Fatal("the unchanged portal listener was replaced")
	}
	c.Write([]byte("x"))
	got := make([]byte, 3)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "a\nx" {
		t.Fatalf("connection across the update: %q, %v", got, err)
	}

	// Removing a service closes its listener: its port is refused.
	mustUpdate(t, p, svc("web", port, a.addr, b.addr))
	if _, err := net.DialTimeout("tcp4", portal(other).String(), within); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial removed service: %v, want connection refused", err)
	}
}

func TestExternalPortIsReachableOnLoopback(t *testing.T) {
	b := startBackend(t, "ext")
	p := startProxy(t, Config{}) // ExternalAddress defaults to 0.0.0.0
	port, ext := freePort(t), freePort(t)
	s := svc("web", port, b.addr)
	s.Ports[0].ExternalPort = ext
	mustUpdate(t, p, s)

	if got := hello(t, netip.AddrPortFrom(loopback, uint16(ext))); got != "ext" {
		t.Fatalf("external port answered %q", got)
	}
	st := p.Status()
	want := []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:" + itoa(ext)), portal(port)}
	if len(st) != 1 || len(st[0].Listening) != 2 || st[0].Listening[0] != want[0] || st[0].Listening[1] != want[1] {
		t.Fatalf("Status = %+v, want listeners %v", st, want)
	}
}

func TestPortInUseIsAnErrorForThatServiceOnly(t *testing.T) {
	b := startBackend(t, "ok")
	taken, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	p := startProxy(t, Config{})
	okPort, badPort := freePort(t), freePort(t)
	bad := svc("bad", badPort, b.addr)
	bad.Ports[0].ExternalPort = takenPort
	services := []Service{bad, svc("good", okPort, b.addr)}

	errs := p.Update(services)
	if len(errs) != 1 || !errors.Is(errs["bad"], syscall.EADDRINUSE) {
		t.Fatalf("Update errors = %v, want only bad with address in use", errs)
	}
	if !strings.Contains(errs["bad"].Error(), "service bad port p") {
		t.Errorf("error %q does not name the service and port", errs["bad"])
	}
	if got := hello(t, portal(okPort)); got != "ok" {
		t.Fatalf("good service answered %q", got)
	}
	if got := hello(t, portal(badPort)); got != "ok" {
		t.Fatalf("bad service's portal (which is free) answered %q", got)
	}

	// Level-triggered: once the port is free, the next Update heals it.
	taken.Close()
	if errs := p.Update(services); errs != nil {
		t.Fatalf("Update after freeing the port: %v", errs)
	}
	if got := hello(t, netip.AddrPortFrom(loopback, uint16(takenPort))); got != "ok" {
		t.Fatalf("healed external port answered %q", got)
	}
	for _, st := range p.Status() {
		if st.Err != nil {
			t.Errorf("Status of %s still has error %v", st.Service, st.Err)
		}
	}
}

func TestInvalidServiceIsReportedAndOthersServed(t *testing.T) {
	b := startBackend(t, "ok")
	p := startProxy(t, Config{})
	port := freePort(t)
	bad := Service{Name: "bad", Ports: []Port{{Port: 1}}}
	errs := p.Update([]Service{bad, svc("good", port, b.addr)})
	if len(errs) != 1 || !errors.Is(errs["bad"], ErrInvalidService) {
		t.Fatalf("Update errors = %v, want only bad as invalid", errs)
	}
	if got := hello(t, portal(port)); got != "ok" {
		t.Fatalf("good service answered %q", got)
	}
}

func TestConnectionsLeaveNoGoroutinesOrDescriptorsBehind(t *testing.T) {
	a, b := startBackend(t, ""), startBackend(t, "")
	p := startProxy(t, Config{})
	port, gone := freePort(t), freePort(t)
	mustUpdate(t, p, svc("web", port, a.addr, b.addr, deadAddr(t)), svc("gone", gone))
	// Warm up the pools (workers, buffers, splice pipes) first: what they
	// keep is not a leak.
	for range 3 {
		c := dial(t, portal(port))
		c.Write(make([]byte, 1<<20))
		io.ReadFull(c, make([]byte, 1<<20))
		c.Close()
	}
	baseline := runtime.NumGoroutine()
	// Pooled splice pipes are kept, not leaked (at most maxIdlePipes):
	// when a connection starts before the last one returned its pipes,
	// the pool grows. Count descriptors without them.
	fds := openFDs(t) - 2*p.pipes.idleCount()

	for range 50 {
		c := dial(t, portal(port))
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
		c.Close()
	}
	// Half-closed by the client only: the proxy must still finish when the
	// backend (an echo) closes after the client's EOF.
	for range 10 {
		c := dial(t, portal(port))
		c.CloseWrite()
		io.ReadAll(c)
		c.Close()
	}
	// Clients reset without an endpoint, and bulk transfers.
	for range 10 {
		resetOrClosed(portal(gone))
	}
	for range 3 {
		c := dial(t, portal(port))
		go c.Write(make([]byte, 3<<20))
		io.ReadFull(c, make([]byte, 3<<20))
		c.Close()
	}
	testenv.Eventually(t, within, func() error {
		g, f, active := runtime.NumGoroutine(), openFDs(t)-2*p.pipes.idleCount(), p.Status()[1].Active
		if g <= baseline && f <= fds && active == 0 {
			return nil
		}
		buf := make([]byte, 1<<20)
		return fmt.Errorf("goroutines and descriptors not back to the level before the connections: goroutines %d (before %d), descriptors without pooled pipes %d (before %d), active connections %d; goroutines:\n%s",
			g, baseline, f, fds, active, buf[:runtime.Stack(buf, true)])
	})
}

// openFDs counts the open file descriptors of the process.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestTCPUrgentDataDoesNotStallTheRelay(t *testing.T) {
	b := startBackend(t, "")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("urgent", port, b.addr))

	c := dial(t, portal(port))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// "abc", an urgent byte, "def" in one go: the kernel stops the
	// proxy's read at the urgent mark, so the first read is short
	// although more data waits behind it.
	var serr error
	rc.Write(func(fd uintptr) bool {
		if serr = unix.Send(int(fd), []byte("abc"), unix.MSG_MORE); serr != nil {
			return true
		}
		if serr = unix.Send(int(fd), []byte("!"), unix.MSG_OOB|unix.MSG_MORE); serr != nil {
			return true
		}
		serr = unix.Send(int(fd), []byte("def"), 0)
		return true
	})
	if serr != nil {
		t.Fatal(serr)
	}
	// Out-of-band data is not relayed (it never was: a plain read skips
	// it); the rest must come back without waiting for more traffic.
	got := make([]byte, 6)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "abcdef" {
		t.Fatalf("echo = %q, %v; want abcdef", got, err)
	}
}

func TestRunEndClosesListenersAndConnections(t *testing.T) {
	b := startBackend(t, "")
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	mustUpdate(t, p, svc("web", port, b.addr))
	c := dial(t, portal(port))
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))

	baseline := runtime.NumGoroutine()
	ctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(within):
		t.Fatal("Run did not return")
	}
	if err := readsClosed(c, within); err != nil {
		t.Fatalf("connection stayed open after Run returned: %v", err)
	}
	if _, err := net.DialTimeout("tcp4", portal(port).String(), within); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Run returned: %v, want refused", err)
	}
	if errs := p.Update([]Service{svc("web", port, b.addr)}); !errors.Is(errs["web"], ErrClosed) {
		t.Fatalf("Update after Run = %v, want ErrClosed", errs)
	}
	// Everything of the proxy is gone: its accept loop and the relay
	// goroutines (the backend's own may still be finishing).
	testenv.Eventually(t, within, testenv.True("proxy goroutines gone", func() bool { return runtime.NumGoroutine() < baseline-2 }))
}

func TestTCPAlternatingBulkAndSmallMessagesKeepFlowing(t *testing.T) {
	b := startBackend(t, "")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, svc("mixed", port, b.addr))

	c := dial(t, portal(port))
	big := make([]byte, 3*countChunk/2+7) // goes through splice and back
	rand.Read(big)
	for i := range 6 {
		msg := []byte("small")
		if i%2 == 0 {
			msg = big
		}
		go c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("message %d (%d bytes): %v", i, len(msg), err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("message %d (%d bytes) came back different", i, len(msg))
		}
	}
}

// pollPair returns a socket in poll connected over loopback to a
// net.TCPConn, the peer the test plays.
func pollPair(t *testing.T, poll *poller) (*pollFD, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, e := rawSocket(loopback)
	if e != 0 {
		t.Fatal(e)
	}
	d, err := poll.open(fd)
	if err != nil {
		rawClose(fd)
		t.Fatal(err)
	}
	t.Cleanup(func() { poll.close(d) })
	sa := newSockaddr(ln.Addr().(*net.TCPAddr).AddrPort())
	if e := rawConnect(fd, sa); e != unix.EINPROGRESS {
		t.Fatalf("connect: %v, want EINPROGRESS", e)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	testenv.Eventually(t, within, testenv.True("connected", func() bool {
		e := rawConnect(fd, sa)
		return e == 0 || e == unix.EISCONN
	}))
	return d, peer.(*net.TCPConn)
}

func testPoller(t *testing.T) *poller {
	t.Helper()
	poll, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(poll.stop) // after the sockets' cleanups, which come later
	return poll
}

func TestCloseDoesNotWaitForAPeerThatStoppedReading(t *testing.T) {
	poll := testPoller(t)
	proxyClient, clientSide := pollPair(t, poll)
	proxyBackend, _ := pollPair(t, poll) // the backend never reads

	// Fill the proxy→backend direction until a send would block.
	// Big sends first, then single bytes to use up the room left in the
	// last segment, so that even a 5-byte send must wait.
	for _, size := range []int{64 << 10, 1} {
		chunk := make([]byte, size)
		for {
			if _, e := rawSend(proxyBackend.fd, chunk); e == unix.EAGAIN {
				break
			} else if e != 0 {
				t.Fatal(e)
			}
		}
	}

	// A small message: the relay reads it and blocks sending it on.
	c := &tcpConn{client: proxyClient, backend: proxyBackend}
	done := make(chan error, 1)
	go func() {
		done <- c.copy(proxyBackend, proxyClient, prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}), &pipePool{})
	}()
	clientSide.SetDeadline(time.Now().Add(within))
	if _, err := clientSide.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// Once the relay has read the message, it is stuck in the send.
	testenv.Eventually(t, within, testenv.True("relay read the message", func() bool {
		queued, err := unix.IoctlGetInt(proxyClient.fd, unix.SIOCINQ)
		return err == nil && queued == 0
	}))

	closed := make(chan struct{})
	go func() { c.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(within):
		t.Fatal("close hung on a relay blocked in a send")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("relay ended without an error after close")
		}
	case <-time.After(within):
		t.Fatal("relay did not end after close")
	}
}

func TestExternalPortMayShareItsNumberWithAPortal(t *testing.T) {
	web, other := startBackend(t, "web"), startBackend(t, "other")
	p := startProxy(t, Config{})
	port := freePort(t)
	// web: port N and externalPort N; other: a portal on port N too.
	s := svc("web", port, web.addr)
	s.PortalIP = netip.MustParseAddr("127.0.0.2")
	s.Ports[0].ExternalPort = port
	o := svc("other", port, other.addr)
	o.PortalIP = netip.MustParseAddr("127.0.0.3")
	mustUpdate(t, p, s, o)

	for addr, want := range map[string]string{
		"127.0.0.1": "web",   // external port, any host address
		"127.0.0.2": "web",   // web's portal
		"127.0.0.3": "other", // other's portal, not the wildcard external port
	} {
		if got := hello(t, netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port))); got != want {
			t.Errorf("%s:%d answered %q, want %q", addr, port, got, want)
		}
	}
}

func TestWildcardExternalPortRefusesThePortalRange(t *testing.T) {
	b := startBackend(t, "ext")
	// 127.77.0.0/16 stands for the portal range: local, like the real one.
	p := startProxy(t, Config{PortalCIDR: netip.MustParsePrefix("127.77.0.0/16")})
	port, ext := freePort(t), freePort(t)
	s := svc("web", port, b.addr)
	s.PortalIP = netip.MustParseAddr("127.77.0.5")
	s.Ports[0].ExternalPort = ext
	mustUpdate(t, p, s)

	if got := hello(t, netip.AddrPortFrom(loopback, uint16(ext))); got != "ext" {
		t.Fatalf("external port on 127.0.0.1 answered %q", got)
	}
	if got := hello(t, netip.AddrPortFrom(s.PortalIP, uint16(port))); got != "ext" {
		t.Fatalf("portal answered %q", got)
	}
	for _, a := range []string{"127.77.0.5", "127.77.0.99"} {
		if err := resetOrClosed(netip.AddrPortFrom(netip.MustParseAddr(a), uint16(ext))); err != nil {
			t.Errorf("%s:%d (portal range, no such service port): %v, want reset", a, ext, err)
		}
	}
}

func TestExternalPortHeldWithReusePortByAnotherProgramIsStillAnError(t *testing.T) {
	// haproxy, for one, sets SO_REUSEPORT on its listeners by default.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	taken, err := lc.Listen(context.Background(), "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	b := startBackend(t, "")
	p := startProxy(t, Config{})
	s := svc("web", freePort(t), b.addr)
	s.Ports[0].ExternalPort = taken.Addr().(*net.TCPAddr).Port
	if errs := p.Update([]Service{s}); !errors.Is(errs["web"], syscall.EADDRINUSE) {
		t.Fatalf("Update = %v, want address in use for web", errs)
	}
}

func TestPortalPortAddedLaterNextToAWildcardExternalPort(t *testing.T) {
	web, other := startBackend(t, "web"), startBackend(t, "other")
	p := startProxy(t, Config{})
	webPort, n := freePort(t), freePort(t)
	s := svc("web", webPort, web.addr)
	s.Ports[0].ExternalPort = n
	mustUpdate(t, p, s)

	// Later a service gets a portal port with the external port's number:
	// the external listener is reopened to share it.
	o := svc("other", n, other.addr)
	o.PortalIP = netip.MustParseAddr("127.0.0.3")
	mustUpdate(t, p, s, o)
	if got := hello(t, netip.AddrPortFrom(loopback, uint16(n))); got != "web" {
		t.Errorf("external port answered %q, want web", got)
	}
	if got := hello(t, netip.AddrPortFrom(o.PortalIP, uint16(n))); got != "other" {
		t.Errorf("other's portal answered %q, want other", got)
	}
}

func TestActiveConnectionsGaugeFollowsOpenConnectionsAndSessions(t *testing.T) {
	tcpBackend := startBackend(t, "")
	udpBackend := startUDPBackend(t, "u")
	reg := prometheus.NewRegistry()
	p := startProxy(t, Config{Registerer: reg})
	tcpPort, udpPort := freePort(t), freePort(t)
	mustUpdate(t, p, svc("web", tcpPort, tcpBackend.addr), udpSvc("dns", udpPort, udpBackend))

	active := func(service, port string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "cuelet_proxy_active_connections" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["service"] == service && l["port"] == port {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1 // no series
	}
	if got := active("web", "p"); got != 0 {
		t.Fatalf("before any connection: %v, want 0", got)
	}

	c1, c2 := dial(t, portal(tcpPort)), dial(t, portal(tcpPort))
	for _, c := range []*net.TCPConn{c1, c2} {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, udpClient(t), portal(udpPort), "q")
	if got := active("web", "p"); got != 2 {
		t.Errorf("two TCP connections open: %v, want 2", got)
	}
	if got := active("dns", "dns"); got != 1 {
		t.Errorf("one UDP session open: %v, want 1", got)
	}

	c1.Close()
	testenv.Eventually(t, within, testenv.True("one connection left", func() bool { return active("web", "p") == 1 }))

	mustUpdate(t, p, udpSvc("dns", udpPort, udpBackend))
	if got := active("web", "p"); got != -1 {
		t.Errorf("removed service still has a series: %v", got)
	}
}

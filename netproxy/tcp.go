package netproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// tcpListener is a listening TCP socket in the proxy's poller.
type tcpListener struct {
	poll *poller
	// mu is held around accept(2) and around the close, so the
	// descriptor is never used after it is closed (and maybe reused).
	mu     sync.Mutex
	closed bool
	fd     *pollFD
}

// listenBacklog asks for the longest accept queue; the kernel caps it at
// net.core.somaxconn.
const listenBacklog = 1<<16 - 1

// listenTCP opens a listening socket like net.ListenConfig.Listen does
// (SO_REUSEADDR, IPV6_V6ONLY for IPv6), plus the options of
// setListenOptions, TCP_NODELAY and SO_KEEPALIVE. Accepted sockets
// inherit the last two, so they cost no system call per connection: no
// Nagle delays on relayed messages, and keep-alive with the kernel's
// timings (two hours idle by default, the net.ipv4.tcp_keepalive_*
// sysctls), so dead peers are found eventually.
func listenTCP(poll *poller, lk listenerKey) (*tcpListener, error) {
	v6 := lk.addr.Addr().Unmap().Is6()
	network := "tcp4"
	if v6 {
		network = "tcp6"
	}
	fail := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: net.TCPAddrFromAddrPort(lk.addr), Err: err}
	}
	fd, e := rawSocket(lk.addr.Addr())
	if e != 0 {
		return nil, fail(os.NewSyscallError("socket", e))
	}
	ok := false
	defer func() {
		if !ok {
			rawClose(fd)
		}
	}()
	type option struct{ level, opt int }
	opts := []option{{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.IPPROTO_TCP, unix.TCP_NODELAY}, {unix.SOL_SOCKET, unix.SO_KEEPALIVE}}
	if v6 {
		opts = append(opts, option{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY})
	}
	for _, o := range opts {
		if e := rawSetsockoptInt(fd, o.level, o.opt, 1); e != 0 {
			return nil, fail(os.NewSyscallError("setsockopt", e))
		}
	}
	if err := setListenOptions(fd, lk); err != nil {
		return nil, fail(err)
	}
	sa := newSockaddr(lk.addr)
	if _, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len)); e != 0 {
		return nil, fail(os.NewSyscallError("bind", e))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_LISTEN, uintptr(fd), listenBacklog, 0); e != 0 {
		return nil, fail(os.NewSyscallError("listen", e))
	}
	d, err := poll.open(fd)
	if err != nil {
		return nil, fail(err)
	}
	ok = true
	return &tcpListener{poll: poll, fd: d}, nil
}

// accept returns a new connection's socket and the client's address; its
// error is unix.EAGAIN when no connection is waiting, net.ErrClosed once
// the listener is closed.
func (l *tcpListener) accept() (int, netip.AddrPort, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return -1, netip.AddrPort{}, net.ErrClosed
	}
	fd, client, e := rawAccept(l.fd.fd)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return fd, client, nil
}

// close closes the socket at once (Update may bind its address again right
// after) and wakes the accept loop, which then returns.
func (l *tcpListener) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.poll.close(l.fd)
	}
	l.mu.Unlock()
	l.fd.wake()
}

// acceptTCP accepts until the listener is closed.
func (l *listener) acceptTCP() {
	defer l.sp.p.wg.Done()
	var backoff time.Duration
	for {
		fd, client, err := l.tcp.accept()
		switch {
		case err == nil:
		case err == unix.EAGAIN:
			l.tcp.fd.waitRead()
			continue
		case err == unix.ECONNABORTED:
			continue // reset by the client while in the queue
		case errors.Is(err, net.ErrClosed):
			return
		default:
			// Out of file descriptors and the like: wait a little rather
			// than spin on a listener that keeps failing.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.sp.warn.Warn().Str("action", "accept").Err(os.NewSyscallError("accept4", err)).Stringer("backoff", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				return
			}
		}
		backoff = 0
		if l.foreign.IsValid() {
			if a, e := rawLocalAddr(fd); e == 0 && l.foreign.Contains(a.Addr()) {
				rawReset(fd)
				continue
			}
		}
		l.sp.p.spawn(func() { l.sp.serveTCP(fd, client.Addr()) })
	}
}

// tcpConn is one relayed connection.
type tcpConn struct {
	client, backend *pollFD
	ep              netip.AddrPort
	// eofs counts the directions that ended with EOF (see copy).
	eofs atomic.Int32

	mu sync.Mutex
	// done: close shut both sockets down, or release closed them (their
	// descriptor numbers may belong to other sockets by now); either way
	// close has nothing left to do.
	done bool
}

// close ends the connection from anywhere (an error in one direction, a
// drain timeout, a removed service): it shuts both sockets down both ways,
// which ends both relays, a read with EOF and a send with EPIPE, and
// wakes them in case they wait. serveTCP closes the sockets after both
// relays returned. Nothing here waits, so a peer that stopped reading
// cannot hold up the caller (Update, for one).
func (c *tcpConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	rawShutdown(c.client.fd, unix.SHUT_RDWR)
	rawShutdown(c.backend.fd, unix.SHUT_RDWR)
	c.client.wake()
	c.backend.wake()
}

// release closes both sockets once neither relay uses them.
func (c *tcpConn) release(poll *poller) {
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
	poll.close(c.client)
	poll.close(c.backend)
}

// serveTCP relays one accepted connection, whose socket it owns.
func (sp *servicePort) serveTCP(fd int, src netip.Addr) {
	poll := sp.p.poll
	sp.m.conns.Inc()
	client, err := poll.open(fd)
	if err != nil {
		rawReset(fd)
		sp.warn.Warn().Str("action", "accept").Str("client", src.String()).Err(err).Msg("client reset: cannot watch its socket")
		return
	}
	var c *tcpConn
	for attempt := 1; ; attempt++ {
		backend, ep, err := sp.dialTCP(src)
		if err != nil {
			// A reset tells the client at once, where a plain close could
			// look like an empty answer.
			poll.reset(client)
			ev := sp.warn.Warn()
			if errors.Is(err, ErrNoEndpoints) {
				ev = sp.log.Debug()
			}
			ev.Str("action", "connect").Str("client", src.String()).Err(err).Msg("client reset: no endpoint answered")
			return
		}
		c = &tcpConn{client: client, backend: backend, ep: ep}
		err = sp.track(c)
		if err == nil {
			break
		}
		poll.close(backend)
		// The endpoint left the rotation between the pick and now (an
		// Update while dialing): nothing was relayed yet, so the client
		// loses nothing by going to an endpoint that is still in it. Each
		// new try needs another Update to fail again; give up after a few.
		if errors.Is(err, errEndpointLeft) && attempt < maxSetupAttempts {
			continue
		}
		poll.reset(client)
		return
	}
	defer sp.untrack(c)

	// One goroutine per direction. A clean EOF is passed on as a
	// half-close, so protocols that shut down one side keep working; an
	// error in either direction closes both sockets, which ends the other
	// copy at once.
	done := make(chan struct{})
	sp.p.spawn(func() {
		defer close(done)
		if err := c.copy(c.backend, c.client, sp.m.toEndpoint, sp.p.pipes); err != nil {
			c.close()
		}
	})
	if err := c.copy(c.client, c.backend, sp.m.toClient, sp.p.pipes); err != nil {
		c.close()
	}
	<-done
	c.release(poll)
}

// maxSetupAttempts bounds how often a connection picks and dials again
// because its endpoint left the rotation while it was being dialed.
const maxSetupAttempts = 3

// countChunk is how much a bulk transfer moves with splice(2) before the
// byte counter is updated and the copy looks again at the traffic.
const countChunk = 1 << 20

// readBufSize is the buffer of the read/send path. A read that fills it
// means bulk traffic, which then goes through splice.
const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// copy copies src to dst until EOF, which it passes on as a half-close
// of dst (and returns nil), or until an error.
//
// Small messages (request/response traffic) are read and sent through a
// pooled buffer, which is taken only while the socket has data: an idle
// connection holds no buffer. For small messages read(2)+send(2) is
// cheaper than splice(2), which moves every message through a pipe with
// two calls plus page references.
//
// Bulk traffic (a read that fills the buffer) switches to splice(2)
// through a pooled pipe (see spliceCounted): the bytes never enter user
// space. After countChunk bytes it comes back, so a connection that turns
// interactive again gets the cheap path again.
func (c *tcpConn) copy(dst, src *pollFD, counter prometheus.Counter, pipes *pipePool) error {
	src.waitRead() // see copySmall
	for {
		eof, bulk, err := copySmall(dst, src, counter)
		if bulk {
			eof, err = spliceCounted(dst, src, counter, pipes)
		}
		switch {
		case err != nil:
			return err
		case eof:
			// The direction that ends second leaves the FIN to the close
			// that follows at once: dst has nothing left to read (the
			// other direction read it to its EOF), so close(2) sends a
			// FIN, not a reset, and a shutdown(2) first would be a
			// system call for nothing.
			if c.eofs.Add(1) == 2 {
				return nil
			}
			if e := rawShutdown(dst.fd, unix.SHUT_WR); e != 0 {
				return os.NewSyscallError("shutdown", e)
			}
			return nil
		}
	}
}

// copySmall relays through a buffer until EOF, an error, or a read that
// fills the buffer (bulk).
//
// A read waits only when the socket is drained, and a read shorter than
// the buffer has drained it, unless the socket hung up, failed or has
// urgent data (the kernel stops a read at those); otherwise new data
// brings a new token. So a read returns EAGAIN only after a stale token,
// where reading until EAGAIN cost a read for every message. A socket new
// to the poller gets a token when it has data already, so copy waits
// before its first read: a backend's answer is never there yet.
func copySmall(dst, src *pollFD, counter prometheus.Counter) (eof, bulk bool, err error) {
	bp := readBufs.Get().(*[]byte)
	buf := *bp
	for {
		n, e := rawRead(src.fd, buf)
		switch {
		case e == unix.EAGAIN:
		case e != 0:
			err = os.NewSyscallError("read", e)
		case n == 0:
			eof = true
		default:
			if err = sendAll(dst, buf[:n]); err != nil {
				break
			}
			counter.Add(float64(n))
			if n == len(buf) {
				bulk = true
				break
			}
			if src.more.Load() {
				continue
			}
		}
		if err != nil || eof || bulk {
			readBufs.Put(bp)
			return eof, bulk, err
		}
		// Drained: wait without the buffer.
		readBufs.Put(bp)
		src.waitRead()
		bp = readBufs.Get().(*[]byte)
		buf = *bp
	}
}

// sendAll sends all of b, waiting while dst's buffer is full.
func sendAll(dst *pollFD, b []byte) error {
	for len(b) > 0 {
		n, e := rawSend(dst.fd, b)
		switch e {
		case 0:
			b = b[n:]
		case unix.EAGAIN:
			dst.waitWrite()
		default:
			return os.NewSyscallError("send", e)
		}
	}
	return nil
}

// spliceCounted moves up to countChunk bytes from src to dst with
// splice(2), socket to pipe to socket, and then counts them. The pipe,
// from a pool, is drained after every fill and goes back to the pool
// while src has nothing to read, so an idle connection holds none.
// Without a pipe to be had (out of descriptors) it moves nothing, and
// the caller goes on through its buffer.
func spliceCounted(dst, src *pollFD, counter prometheus.Counter, pipes *pipePool) (eof bool, err error) {
	var moved int
	defer func() {
		if moved > 0 {
			counter.Add(float64(moved))
		}
	}()
	for moved < countChunk {
		pp, err := pipes.get()
		if err != nil {
			return false, nil
		}
		n, state, err := spliceThrough(dst, src, pp, countChunk-moved)
		moved += n
		if err != nil {
			pipes.discard(pp) // may hold bytes that never left
			return false, err
		}
		pipes.put(pp)
		switch state {
		case srcEOF:
			return true, nil
		case srcEmpty:
			src.waitRead()
		}
	}
	return false, nil
}

// What spliceThrough found at src when it stopped.
const (
	srcMore  = iota // it moved max bytes
	srcEmpty        // nothing to read right now
	srcEOF
)

// spliceThrough moves up to max bytes from src to dst through p, filling
// and draining it in turn, until max, until src has nothing to read or
// is at EOF, or until an error. p is empty when it returns no error.
func spliceThrough(dst, src *pollFD, p splicePipe, max int) (moved, state int, err error) {
	for moved < max {
		n, e := rawSplice(src.fd, p.w, min(max-moved, pipeSize))
		switch {
		case e == unix.EAGAIN:
			return moved, srcEmpty, nil
		case e != 0:
			return moved, 0, os.NewSyscallError("splice", e)
		case n == 0:
			return moved, srcEOF, nil
		}
		for left := n; left > 0; {
			m, e := rawSplice(p.r, dst.fd, left)
			switch e {
			case 0:
				left -= m
			case unix.EAGAIN:
				dst.waitWrite()
			default:
				return moved, 0, os.NewSyscallError("splice", e)
			}
		}
		moved += n
	}
	return moved, srcMore, nil
}

func (sp *servicePort) dialTCP(client netip.Addr) (*pollFD, netip.AddrPort, error) {
	eps, first := sp.lb.pick(client)
	if len(eps) == 0 {
		return nil, netip.AddrPort{}, ErrNoEndpoints
	}
	var errs []error
	// Like the first kube-proxy, a failed dial moves on to the next
	// endpoint; unlike it, every endpoint is tried once at most.
	for i := range len(eps) {
		ep := eps[(first+i)%len(eps)]
		c, err := sp.p.dialEndpoint(ep)
		if err == nil {
			if h := sp.p.testHookDialed; h != nil {
				h(ep)
			}
			if i > 0 {
				sp.lb.stick(client, ep)
			}
			return c, ep, nil
		}
		errs = append(errs, err)
		sp.warn.Warn().Str("action", "dial").Str("endpoint", ep.String()).Err(err).Msg("endpoint did not answer, trying the next")
		if sp.p.ctx.Err() != nil {
			break
		}
	}
	return nil, netip.AddrPort{}, fmt.Errorf("dial %d endpoints: %w", len(eps), errors.Join(errs...))
}

// dialEndpoint connects to ep, within Config.DialTimeout. Like a Go
// dial it sets TCP_NODELAY; like the listeners, SO_KEEPALIVE. It binds no
// local address first: binding 0.0.0.0:0 before connecting takes an
// ephemeral port that TIME_WAIT sockets to other destinations could
// otherwise share, so a busy proxy runs out of ports.
func (p *Proxy) dialEndpoint(ep netip.AddrPort) (*pollFD, error) {
	fail := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ep), Err: err}
	}
	fd, e := rawSocket(ep.Addr())
	if e != 0 {
		return nil, fail(os.NewSyscallError("socket", e))
	}
	rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	d, err := p.poll.open(fd)
	if err != nil {
		rawClose(fd)
		return nil, fail(err)
	}
	sa := newSockaddr(ep)
	e = rawConnect(fd, sa)
	if e == unix.EINPROGRESS {
		// On loopback and a local bridge the handshake has usually
		// finished inside the first call. A second connect tells how it
		// went in one call (Go asks getsockopt(SO_ERROR), then
		// getpeername): 0 connected, EALREADY still going, or the
		// error, such as ECONNREFUSED.
		e = rawConnect(fd, sa)
	}
	err = nil
	switch e {
	case 0, unix.EISCONN:
	case unix.EALREADY, unix.EINPROGRESS:
		err = p.waitConnect(d, sa)
	default:
		err = os.NewSyscallError("connect", e)
	}
	if err != nil {
		p.poll.close(d)
		return nil, fail(err)
	}
	return d, nil
}

// waitConnect waits for a connection under way, up to Config.DialTimeout
// or the end of the proxy.
func (p *Proxy) waitConnect(d *pollFD, sa *sockaddr) error {
	timeout := time.NewTimer(p.cfg.DialTimeout)
	defer timeout.Stop()
	for {
		select {
		case <-d.w:
		case <-timeout.C:
			return fmt.Errorf("no answer within %v: %w", p.cfg.DialTimeout, os.ErrDeadlineExceeded)
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
		switch e := rawConnect(d.fd, sa); e {
		case 0, unix.EISCONN:
			return nil
		case unix.EALREADY, unix.EINPROGRESS:
		default:
			return os.NewSyscallError("connect", e)
		}
	}
}

// pipeSize is the buffer of a splice pipe: the most one splice call
// moves. Go's own splice uses the same (1 MiB); the kernel may refuse it
// (fs.pipe-max-size), and then the default 64 KiB pipe works all the
// same, with more calls.
const pipeSize = 1 << 20

// maxIdlePipes bounds the pipes kept for the next bulk transfer.
const maxIdlePipes = 16

// pipePool keeps empty splice pipes, so that a bulk chunk does not cost a
// pipe2 and two closes.
type pipePool struct {
	mu     sync.Mutex
	closed bool
	idle   []splicePipe
}

type splicePipe struct{ r, w int }

func (pp *pipePool) get() (splicePipe, error) {
	pp.mu.Lock()
	if n := len(pp.idle); n > 0 {
		p := pp.idle[n-1]
		pp.idle = pp.idle[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var fds [2]int
	// unix.Pipe2, like EpollCtl, is a raw system call.
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return splicePipe{}, os.NewSyscallError("pipe2", err)
	}
	unix.RawSyscall(unix.SYS_FCNTL, uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	return splicePipe{r: fds[0], w: fds[1]}, nil
}

// idleCount reports how many pipes the pool keeps.
func (pp *pipePool) idleCount() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return len(pp.idle)
}

// put takes back an empty pipe.
func (pp *pipePool) put(p splicePipe) {
	pp.mu.Lock()
	if !pp.closed && len(pp.idle) < maxIdlePipes {
		pp.idle = append(pp.idle, p)
		p = splicePipe{r: -1}
	}
	pp.mu.Unlock()
	if p.r >= 0 {
		pp.discard(p)
	}
}

func (pp *pipePool) discard(p splicePipe) {
	rawClose(p.r)
	rawClose(p.w)
}

// close closes the idle pipes; pipes put back later are closed then.
func (pp *pipePool) close() {
	pp.mu.Lock()
	idle := pp.idle
	pp.idle, pp.closed = nil, true
	pp.mu.Unlock()
	for _, p := range idle {
		pp.discard(p)
	}
}

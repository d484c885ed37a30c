package netproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// acceptTCP accepts until the listener is closed.
func (l *listener) acceptTCP() {
	defer l.sp.p.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little rather
			// than spin on a listener that keeps failing.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.sp.warn.Warn().Str("action", "accept").Err(err).Dur("backoff", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				return
			}
		}
		backoff = 0
		if l.foreign.IsValid() {
			if a, ok := c.LocalAddr().(*net.TCPAddr); ok && l.foreign.Contains(a.AddrPort().Addr().Unmap()) {
				c.SetLinger(0)
				c.Close()
				continue
			}
		}
		l.sp.p.spawn(func() { l.sp.serveTCP(c) })
	}
}

// tcpConn is one relayed connection.
type tcpConn struct {
	client, backend *net.TCPConn
	ep              netip.AddrPort
	once            sync.Once
}

// close ends both sockets. Deadlines in the past first: a relay blocked
// in a send to one socket holds a reference on the other (it is inside
// that socket's RawConn.Read), and Close waits for references, so closing
// one socket after the other could wait forever for a peer that does not
// read. The deadlines wake every waiter at once.
func (c *tcpConn) close() {
	c.once.Do(func() {
		past := time.Unix(1, 0)
		c.client.SetDeadline(past)
		c.backend.SetDeadline(past)
		c.client.Close()
		c.backend.Close()
	})
}

func (sp *servicePort) serveTCP(client *net.TCPConn) {
	sp.m.conns.Inc()
	src := netip.Addr{}
	if a, ok := client.RemoteAddr().(*net.TCPAddr); ok {
		src = a.AddrPort().Addr().Unmap()
	}
	var c *tcpConn
	for attempt := 1; ; attempt++ {
		backend, ep, err := sp.dialTCP(src)
		if err != nil {
			// A reset tells the client at once, where a plain close could
			// look like an empty answer.
			client.SetLinger(0)
			client.Close()
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
		backend.Close()
		// The endpoint left the rotation between the pick and now (an
		// Update while dialing): nothing was relayed yet, so the client
		// loses nothing by going to an endpoint that is still in it. Each
		// new try needs another Update to fail again; give up after a few.
		if errors.Is(err, errEndpointLeft) && attempt < maxSetupAttempts {
			continue
		}
		client.SetLinger(0)
		client.Close()
		return
	}
	defer sp.untrack(c)

	// One goroutine per direction. A clean EOF is passed on as a
	// half-close (CloseWrite), so protocols that shut down one side keep
	// working; an error in either direction closes both sockets, which
	// ends the other copy at once.
	done := make(chan struct{})
	sp.p.spawn(func() {
		defer close(done)
		if err := copyCounted(c.backend, client, sp.m.toEndpoint); err != nil {
			c.close()
		}
	})
	if err := copyCounted(client, c.backend, sp.m.toClient); err != nil {
		c.close()
	}
	<-done
	c.close()
}

// maxSetupAttempts bounds how often a connection picks and dials again
// because its endpoint left the rotation while it was being dialed.
const maxSetupAttempts = 3

// countChunk is how much a bulk transfer moves with splice(2) before the
// byte counter is updated and the copy looks again at the traffic.
const countChunk = 1 << 20

// readBufSize is the buffer of the read/write path. A read that fills it
// means bulk traffic, which then goes through splice.
const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// copyCounted copies src to dst until EOF, which it passes on as a
// half-close of dst (and returns nil), or until an error.
//
// Small messages (request/response traffic) are read and written through
// a pooled buffer, inside RawConn.Read so that the buffer is taken only
// once the socket is readable: an idle connection holds no buffer. For
// small messages read(2)+write(2) is cheaper than splice(2), which moves
// every message through a pipe with two calls plus page references.
//
// Bulk traffic (a read that fills the buffer) switches to
// (*net.TCPConn).ReadFrom with an io.LimitedReader, which Go turns into
// splice(2) between the two sockets: the bytes never enter user space.
// After countChunk bytes it comes back, so a connection that turns
// interactive again gets the cheap path again.
func copyCounted(dst, src *net.TCPConn, counter prometheus.Counter) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var eof, bulk bool
		var opErr error
		err := rc.Read(func(fd uintptr) bool {
			bp := readBufs.Get().(*[]byte)
			defer readBufs.Put(bp)
			buf := *bp
			for {
				n, rerr := rawRead(fd, buf)
				switch {
				case rerr == unix.EAGAIN:
					return false // drained: wait for readiness
				case rerr != 0:
					opErr = os.NewSyscallError("read", rerr)
					return true
				case n == 0:
					eof = true
					return true
				}
				if err := rawSendAll(wc, buf[:n]); err != nil {
					opErr = err
					return true
				}
				counter.Add(float64(n))
				if n == len(buf) {
					bulk = true
					return true
				}
			}
		})
		switch {
		case err != nil:
			return err
		case opErr != nil:
			return opErr
		case eof:
			return rawCloseWrite(wc)
		case bulk:
			n, err := dst.ReadFrom(&io.LimitedReader{R: src, N: countChunk})
			if n > 0 {
				counter.Add(float64(n))
			}
			if err != nil {
				return err
			}
			if n < countChunk {
				// EOF: ReadFrom stops early only at EOF or on error.
				return rawCloseWrite(wc)
			}
		}
	}
}

func (sp *servicePort) dialTCP(client netip.Addr) (*net.TCPConn, netip.AddrPort, error) {
	eps, first := sp.lb.pick(client)
	if len(eps) == 0 {
		return nil, netip.AddrPort{}, ErrNoEndpoints
	}
	d := &sp.p.dialer
	var errs []error
	// Like the first kube-proxy, a failed dial moves on to the next
	// endpoint; unlike it, every endpoint is tried once at most.
	for i := range len(eps) {
		ep := eps[(first+i)%len(eps)]
		// DialContext, not DialTCP with a zero local address: the latter
		// binds 0.0.0.0:0 before connecting, which costs a system call
		// and, worse, takes ephemeral ports that TIME_WAIT sockets could
		// otherwise share, so a busy proxy runs out of ports.
		c, err := d.DialContext(sp.p.ctx, "tcp", ep.String())
		if err == nil {
			if h := sp.p.testHookDialed; h != nil {
				h(ep)
			}
			if i > 0 {
				sp.lb.stick(client, ep)
			}
			return c.(*net.TCPConn), ep, nil
		}
		errs = append(errs, err)
		sp.warn.Warn().Str("action", "dial").Str("endpoint", ep.String()).Err(err).Msg("endpoint did not answer, trying the next")
		if sp.p.ctx.Err() != nil {
			break
		}
	}
	return nil, netip.AddrPort{}, fmt.Errorf("dial %d endpoints: %w", len(eps), errors.Join(errs...))
}

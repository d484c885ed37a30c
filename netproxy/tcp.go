package netproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		l.sp.p.wg.Add(1)
		go l.sp.serveTCP(c)
	}
}

// tcpConn is one relayed connection.
type tcpConn struct {
	client, backend *net.TCPConn
	ep              netip.AddrPort
	once            sync.Once
}

func (c *tcpConn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.backend.Close()
	})
}

func (sp *servicePort) serveTCP(client *net.TCPConn) {
	defer sp.p.wg.Done()
	sp.m.conns.Inc()
	src := netip.Addr{}
	if a, ok := client.RemoteAddr().(*net.TCPAddr); ok {
		src = a.AddrPort().Addr().Unmap()
	}
	backend, ep, err := sp.dialTCP(src)
	if err != nil {
		// A reset tells the client at once, where a plain close could look
		// like an empty answer.
		client.SetLinger(0)
		client.Close()
		ev := sp.warn.Warn()
		if errors.Is(err, ErrNoEndpoints) {
			ev = sp.log.Debug()
		}
		ev.Str("action", "connect").Str("client", src.String()).Err(err).Msg("client reset: no endpoint answered")
		return
	}
	c := &tcpConn{client: client, backend: backend, ep: ep}
	if !sp.track(c) {
		client.SetLinger(0)
		c.close()
		return
	}
	defer sp.untrack(c)

	// One goroutine per direction. A clean EOF is passed on as a
	// half-close (CloseWrite), so protocols that shut down one side keep
	// working; an error in either direction closes both sockets, which
	// ends the other copy at once.
	done := make(chan struct{})
	sp.p.wg.Add(1)
	go func() {
		defer sp.p.wg.Done()
		defer close(done)
		if err := copyCounted(backend, client, sp.m.toEndpoint); err != nil {
			c.close()
			return
		}
		backend.CloseWrite()
	}()
	if err := copyCounted(client, backend, sp.m.toClient); err != nil {
		c.close()
	} else {
		client.CloseWrite()
	}
	<-done
	c.close()
}

// countChunk is how often long transfers update the byte counters.
const countChunk = 1 << 20

// copyCounted copies src to dst until EOF. It goes through
// (*net.TCPConn).ReadFrom with an io.LimitedReader, which Go turns into
// splice(2) between the two sockets: the bytes never enter user space.
// The limit only makes the call return every countChunk bytes so the
// counter moves during long transfers.
func copyCounted(dst, src *net.TCPConn, counter prometheus.Counter) error {
	lr := &io.LimitedReader{R: src}
	for {
		lr.N = countChunk
		n, err := dst.ReadFrom(lr)
		if n > 0 {
			counter.Add(float64(n))
		}
		if err != nil {
			return err
		}
		if n < countChunk {
			return nil // EOF: ReadFrom stops early only at EOF or on error
		}
	}
}

func (sp *servicePort) dialTCP(client netip.Addr) (*net.TCPConn, netip.AddrPort, error) {
	eps, first := sp.lb.pick(client)
	if len(eps) == 0 {
		return nil, netip.AddrPort{}, ErrNoEndpoints
	}
	d := net.Dialer{Timeout: sp.p.cfg.DialTimeout}
	var errs []error
	// Like the first kube-proxy, a failed dial moves on to the next
	// endpoint; unlike it, every endpoint is tried once at most.
	for i := range len(eps) {
		ep := eps[(first+i)%len(eps)]
		c, err := d.DialTCP(sp.p.ctx, "tcp", netip.AddrPort{}, ep)
		if err == nil {
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

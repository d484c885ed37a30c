package netproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// servicePort is the runtime state of one service port: its rotation, its
// counters and its open connections. Its listeners (portal and external
// port) are owned by the Proxy, keyed by address, so that an unchanged
// address keeps its socket across updates.
type servicePort struct {
	p   *Proxy
	key portKey
	log zerolog.Logger
	// warn is a sampled logger for per-connection problems, so that a dead
	// service under load does not flood the log.
	warn zerolog.Logger
	lb   *balancer
	m    portMetrics

	mu     sync.Mutex
	closed bool
	conns  map[*tcpConn]struct{}
	relays map[*udpRelay]struct{}
}

func newServicePort(p *Proxy, key portKey) *servicePort {
	log := p.log.With().Str("service", key.service).Str("port", key.port).Str("protocol", key.protocol).Logger()
	return &servicePort{
		p:      p,
		key:    key,
		log:    log,
		warn:   log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
		lb:     newBalancer(p.cfg.Now),
		m:      p.metrics.forPort(key.service, key.port),
		conns:  map[*tcpConn]struct{}{},
		relays: map[*udpRelay]struct{}{},
	}
}

// setEndpoints installs a new endpoint set. An endpoint leaves it because
// its replica stopped or failed readiness. Its open TCP connections get
// Config.DrainTimeout to finish (a replica failing readiness to drain
// must not lose the requests it is answering) and are then closed, unless
// the endpoint came back meanwhile (the first kube-proxy left them open
// forever). Its UDP sessions end at once: a datagram has nothing in
// flight to lose, and the client's next one picks a ready endpoint.
func (sp *servicePort) setEndpoints(eps []netip.AddrPort, affinity time.Duration) {
	removed := sp.lb.set(eps, affinity)
	if len(removed) == 0 {
		return
	}
	sp.mu.Lock()
	var doomed []*tcpConn
	for c := range sp.conns {
		if slices.Contains(removed, c.ep) {
			doomed = append(doomed, c)
		}
	}
	relays := make([]*udpRelay, 0, len(sp.relays))
	for r := range sp.relays {
		relays = append(relays, r)
	}
	sp.mu.Unlock()
	if drain := sp.p.cfg.DrainTimeout; drain < 0 {
		for _, c := range doomed {
			c.close()
		}
	} else if len(doomed) > 0 {
		time.AfterFunc(drain, func() {
			for _, c := range doomed {
				if !sp.lb.has(c.ep) {
					c.close()
				}
			}
		})
	}
	for _, r := range relays {
		r.closeSessions(func(s *udpSession) bool { return slices.Contains(removed, s.ep) })
	}
	sp.log.Info().Str("action", "endpoints").Int("endpoints", len(eps)).
		Int("removed", len(removed)).Int("draining_connections", len(doomed)).Msg("endpoints changed")
}

// errEndpointLeft: the endpoint of a connection being set up left the
// rotation after it was picked.
var errEndpointLeft = errors.New("endpoint left the rotation")

// track registers an open connection; it refuses when the service port is
// gone (ErrClosed) or the endpoint left the rotation since it was picked
// (errEndpointLeft), so no connection escapes setEndpoints or close.
func (sp *servicePort) track(c *tcpConn) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	switch {
	case sp.closed:
		return ErrClosed
	case !sp.lb.has(c.ep):
		return errEndpointLeft
	}
	sp.conns[c] = struct{}{}
	return nil
}

func (sp *servicePort) untrack(c *tcpConn) {
	sp.mu.Lock()
	delete(sp.conns, c)
	sp.mu.Unlock()
}

func (sp *servicePort) active() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	n := len(sp.conns)
	for r := range sp.relays {
		n += r.sessionCount()
	}
	return n
}

// close ends every connection of the service port. Its listeners are
// closed by the Proxy before.
func (sp *servicePort) close() {
	sp.mu.Lock()
	sp.closed = true
	conns := make([]*tcpConn, 0, len(sp.conns))
	for c := range sp.conns {
		conns = append(conns, c)
	}
	sp.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// listener is one listening socket of a service port.
type listener struct {
	sp  *servicePort
	key listenerKey
	// foreign is the portal range on a wildcard listener: destinations in
	// it belong to portals, not to this external port.
	foreign netip.Prefix
	tcp     *tcpListener
	udp     *udpRelay
	done    chan struct{}
	once    sync.Once
}

func (sp *servicePort) listen(lk listenerKey) (*listener, error) {
	l := &listener{sp: sp, key: lk, done: make(chan struct{})}
	if lk.addr.Addr().IsUnspecified() {
		l.foreign = sp.p.cfg.PortalCIDR
	}
	switch lk.protocol {
	case "TCP":
		poll, err := sp.p.poller()
		if err != nil {
			return nil, err
		}
		ln, err := listenTCP(poll, lk)
		if err != nil {
			return nil, err
		}
		l.tcp = ln
		sp.p.wg.Add(1)
		go l.acceptTCP()
	case "UDP":
		network := "udp4"
		if lk.addr.Addr().Unmap().Is6() {
			network = "udp6"
		}
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setListenOptions(int(fd), lk) }); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(sp.p.ctx, network, lk.addr.String())
		if err != nil {
			return nil, err
		}
		r, err := newUDPRelay(sp, pc.(*net.UDPConn), lk.addr.Addr().IsUnspecified(), l.foreign)
		if err != nil {
			pc.Close()
			return nil, err
		}
		l.udp = r
		sp.mu.Lock()
		sp.relays[r] = struct{}{}
		sp.mu.Unlock()
		sp.p.wg.Add(1)
		go r.serve()
	default:
		return nil, fmt.Errorf("unknown protocol %q", lk.protocol)
	}
	return l, nil
}

func (l *listener) close() {
	l.once.Do(func() {
		close(l.done)
		if l.tcp != nil {
			l.tcp.close()
		}
		if l.udp != nil {
			l.sp.mu.Lock()
			delete(l.sp.relays, l.udp)
			l.sp.mu.Unlock()
			l.udp.close()
		}
	})
}

// setListenOptions sets the options of a listening socket before it is
// bound:
//
//   - IP_FREEBIND lets a portal listener bind its address before the
//     address is on the node, so the proxy does not depend on the order in
//     which the agent programs addresses and listeners, and a listener
//     survives the address being re-added. The kernel delivers to it as
//     soon as the address is local.
//   - SO_REUSEPORT on portal listeners, and on a wildcard external
//     listener whose port number is also a portal port, lets the two
//     share the number (web: port 80, externalPort 80 is a natural
//     manifest): Linux refuses a wildcard bind next to a specific one on
//     the same port unless both set it, and then hands each packet to the
//     most specific listener, so portal traffic still reaches the portal's
//     listener. Other external listeners do not set it, so a port held by
//     another program, even one that sets SO_REUSEPORT itself (haproxy
//     does by default), stays a clear "address already in use" instead of
//     a port silently shared with it.
func setListenOptions(fd int, lk listenerKey) error {
	wildcard := lk.addr.Addr().IsUnspecified()
	if !wildcard {
		level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
		if lk.addr.Addr().Unmap().Is6() {
			level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return fmt.Errorf("set IP_FREEBIND: %w", err)
		}
	}
	if !wildcard || lk.shared {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("set SO_REUSEPORT: %w", err)
		}
	}
	return nil
}

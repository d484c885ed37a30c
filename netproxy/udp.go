package netproxy

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// udpBufSize holds any UDP datagram, so nothing is ever truncated.
const udpBufSize = 64 << 10

// udpRelay serves one UDP listening socket. Every client address gets a
// session: a connected socket to the endpoint picked for it, and a
// goroutine that relays the endpoint's answers back to the client from the
// address the client sent to (the portal).
type udpRelay struct {
	sp   *servicePort
	conn *net.UDPConn
	// pc reads and sets the local address of each datagram (IP_PKTINFO) on
	// a wildcard listener, so that a reply leaves from the address the
	// client used, not whatever address the route prefers.
	pc *ipv4.PacketConn
	// foreign: datagrams to these destinations are for portals, dropped.
	foreign netip.Prefix

	mu       sync.Mutex
	closed   bool
	sessions map[netip.AddrPort]*udpSession
}

type udpSession struct {
	r       *udpRelay
	client  netip.AddrPort
	local   netip.Addr // destination address of the client's datagrams (wildcard listeners)
	ep      netip.AddrPort
	backend *net.UDPConn
	last    atomic.Int64 // unix nanoseconds of the last datagram either way
	once    sync.Once
}

func newUDPRelay(sp *servicePort, conn *net.UDPConn, wildcard bool, foreign netip.Prefix) (*udpRelay, error) {
	r := &udpRelay{sp: sp, conn: conn, foreign: foreign, sessions: map[netip.AddrPort]*udpSession{}}
	if wildcard && conn.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
		r.pc = ipv4.NewPacketConn(conn)
		if err := r.pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *udpRelay) serve() {
	defer r.sp.p.wg.Done()
	buf := make([]byte, udpBufSize)
	for {
		n, client, local, err := r.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.isClosed() {
				return
			}
			// ICMP errors from earlier replies and the like: keep serving.
			r.sp.warn.Warn().Str("action", "read").Err(err).Msg("UDP read failed")
			continue
		}
		if local.IsValid() && r.foreign.IsValid() && r.foreign.Contains(local) {
			continue
		}
		s, noEndpoints := r.session(client, local)
		if noEndpoints {
			r.refuse(client, local, n)
			continue
		}
		if s == nil {
			continue
		}
		s.touch()
		if _, err := s.backend.Write(buf[:n]); err != nil {
			// Typically ECONNREFUSED: the endpoint answered an earlier
			// datagram with port unreachable. End the session so the
			// client's next datagram picks an endpoint afresh.
			r.sp.warn.Warn().Str("action", "send").Str("endpoint", s.ep.String()).Err(err).Msg("UDP send to endpoint failed")
			s.close()
			continue
		}
		r.sp.m.toEndpoint.Add(float64(n))
	}
}

func (r *udpRelay) read(buf []byte) (int, netip.AddrPort, netip.Addr, error) {
	if r.pc == nil {
		n, client, err := r.conn.ReadFromUDPAddrPort(buf)
		return n, netip.AddrPortFrom(client.Addr().Unmap(), client.Port()), netip.Addr{}, err
	}
	n, cm, src, err := r.pc.ReadFrom(buf)
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	ua, _ := src.(*net.UDPAddr)
	if ua == nil {
		return 0, netip.AddrPort{}, netip.Addr{}, errors.New("datagram without a source address")
	}
	client := ua.AddrPort()
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	var local netip.Addr
	if cm != nil {
		local, _ = netip.AddrFromSlice(cm.Dst.To4())
	}
	return n, client, local, nil
}

func (r *udpRelay) write(b []byte, s *udpSession) error {
	if r.pc == nil || !s.local.IsValid() {
		_, err := r.conn.WriteToUDPAddrPort(b, s.client)
		return err
	}
	cm := &ipv4.ControlMessage{Src: s.local.AsSlice()}
	_, err := r.pc.WriteTo(b, cm, net.UDPAddrFromAddrPort(s.client))
	return err
}

// refuse answers a datagram that no endpoint can take with ICMP port
// unreachable, as TCP gets a reset (SPEC §7).
func (r *udpRelay) refuse(client netip.AddrPort, local netip.Addr, n int) {
	la := r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if !local.IsValid() {
		local = la.Addr().Unmap()
	}
	r.sp.log.Debug().Str("action", "session").Str("client", client.String()).Err(ErrNoEndpoints).Msg("datagram refused")
	if err := r.sp.p.unreachable.send(client, netip.AddrPortFrom(local, la.Port()), n); err != nil {
		r.sp.warn.Warn().Str("action", "refuse").Str("client", client.String()).Err(err).Msg("cannot send ICMP port unreachable")
	}
}

// session returns the client's session, creating it; nil means the
// datagram is dropped (no endpoints, too many sessions, or closing), and
// noEndpoints says it was for want of endpoints.
func (r *udpRelay) session(client netip.AddrPort, local netip.Addr) (s *udpSession, noEndpoints bool) {
	r.mu.Lock()
	if s, ok := r.sessions[client]; ok {
		r.mu.Unlock()
		return s, false
	}
	closed, full := r.closed, len(r.sessions) >= r.sp.p.cfg.UDPMaxSessions
	r.mu.Unlock()
	if closed {
		return nil, false
	}
	if full {
		r.sp.warn.Warn().Str("action", "session").Str("client", client.String()).
			Int("max_sessions", r.sp.p.cfg.UDPMaxSessions).Msg("too many UDP sessions, datagram dropped")
		return nil, false
	}

	eps, first := r.sp.lb.pick(client.Addr())
	if len(eps) == 0 {
		return nil, true
	}
	ep := eps[first]
	// Dialing a UDP socket only binds and connects it locally; it cannot
	// find a dead endpoint, the first send does (see serve).
	backend, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep))
	if err != nil {
		r.sp.warn.Warn().Str("action", "session").Str("endpoint", ep.String()).Err(err).Msg("cannot open UDP session")
		return nil, false
	}
	s = &udpSession{r: r, client: client, local: local, ep: ep, backend: backend}
	s.touch()

	r.mu.Lock()
	if r.closed || !r.sp.lb.has(ep) {
		r.mu.Unlock()
		backend.Close()
		return nil, false
	}
	r.sessions[client] = s
	r.mu.Unlock()
	r.sp.m.conns.Inc()
	r.sp.p.wg.Add(1)
	go s.replies()
	return s, false
}

func (s *udpSession) touch() { s.last.Store(time.Now().UnixNano()) }

// replies relays the endpoint's datagrams to the client until the session
// has been idle for the idle timeout or is closed.
func (s *udpSession) replies() {
	r := s.r
	defer r.sp.p.wg.Done()
	defer s.close()
	idle := r.sp.p.cfg.UDPIdleTimeout
	buf := make([]byte, udpBufSize)
	// The deadline is moved only when it fires, not on every datagram: it
	// is set to the last activity plus the idle timeout, and a session
	// that was active meanwhile just gets a later one.
	s.backend.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := s.backend.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				last := time.Unix(0, s.last.Load())
				if time.Since(last) >= idle {
					r.sp.log.Debug().Str("action", "expire").Str("client", s.client.String()).Msg("UDP session idle, closed")
					return
				}
				s.backend.SetReadDeadline(last.Add(idle))
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				r.sp.log.Debug().Str("action", "receive").Str("endpoint", s.ep.String()).Err(err).Msg("UDP session ended")
			}
			return
		}
		s.touch()
		if err := r.write(buf[:n], s); err != nil {
			r.sp.warn.Warn().Str("action", "reply").Str("client", s.client.String()).Err(err).Msg("UDP reply failed")
			continue
		}
		r.sp.m.toClient.Add(float64(n))
	}
}

func (s *udpSession) close() {
	s.once.Do(func() {
		s.backend.Close()
		r := s.r
		r.mu.Lock()
		if r.sessions[s.client] == s {
			delete(r.sessions, s.client)
		}
		r.mu.Unlock()
	})
}

// closeSessions closes the sessions for which match is true.
func (r *udpRelay) closeSessions(match func(*udpSession) bool) {
	r.mu.Lock()
	var doomed []*udpSession
	for _, s := range r.sessions {
		if match(s) {
			doomed = append(doomed, s)
		}
	}
	r.mu.Unlock()
	for _, s := range doomed {
		s.close()
	}
}

func (r *udpRelay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *udpRelay) sessionCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

func (r *udpRelay) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.conn.Close()
	r.closeSessions(func(*udpSession) bool { return true })
}

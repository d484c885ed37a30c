package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// serveUDP answers the queries that come to pc until ctx is done, then
// closes pc. It reads the socket itself instead of through miekg's
// server, which allocates about 15 times per query before the handler
// runs (the read session, the client's address, the unpacked message) and
// starts a goroutine per packet, whose answers then queue for the
// socket's write lock: under the benchmark's 64-client load that was a GC
// cycle every ~1,500 queries, with pauses that went into the p99 (see
// docs/performance.md). An A or AAAA query for a service (the common query: resolvers
// in pods ask for both, most without EDNS) is answered in the read loop
// from what the zone computed when it was built, with no allocation; every other packet goes
// to a goroutine of its own that unpacks it with miekg and answers it as
// miekg's server would.
func (s *Server) serveUDP(ctx context.Context, pc *net.UDPConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer waitAtMost(&wg, time.Second)
	buf := make([]byte, mdns.MaxMsgSize)
	out := make([]byte, 0, mdns.MinMsgSize)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			pc.Close()
			return fmt.Errorf("dns: read udp: %w", err)
		}
		if ans, qtype, res, ok := s.zone.Load().answerPlain(buf[:n], out[:0]); ok {
			s.countType(qtype, res)
			pc.WriteToUDPAddrPort(ans, from) // a client gone is not our error
			continue
		}
		pkt := bytes.Clone(buf[:n])
		wg.Go(func() { s.serveUDPPacket(pc, pkt, from) })
	}
}

// waitAtMost waits for wg, but no longer than d: a query forwarded to an
// upstream that does not answer may take seconds, and SIGTERM must stop
// the agent within 10 s (SPEC §3); its late answer then fails to write on
// the closed socket, as miekg's server's did after its 1 s shutdown.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// serveUDPPacket answers one packet the fast path left, as miekg's server
// does (DefaultMsgAcceptFunc, FORMERR for what does not unpack, nothing
// for responses and short packets), then through ServeDNS.
func (s *Server) serveUDPPacket(pc *net.UDPConn, pkt []byte, from netip.AddrPort) {
	if len(pkt) < headerLen {
		return
	}
	dh := mdns.Header{
		Id:      binary.BigEndian.Uint16(pkt[0:]),
		Bits:    binary.BigEndian.Uint16(pkt[2:]),
		Qdcount: binary.BigEndian.Uint16(pkt[4:]),
		Ancount: binary.BigEndian.Uint16(pkt[6:]),
		Nscount: binary.BigEndian.Uint16(pkt[8:]),
		Arcount: binary.BigEndian.Uint16(pkt[10:]),
	}
	w := &udpWriter{pc: pc, to: from}
	req := new(mdns.Msg)
	err := req.Unpack(pkt) // sets the header even when the rest fails
	action := mdns.DefaultMsgAcceptFunc(dh)
	switch {
	case action == mdns.MsgIgnore:
		return
	case action == mdns.MsgAccept && err == nil:
		s.ServeDNS(w, req)
		return
	}
	opcode := req.Opcode
	req.SetRcodeFormatError(req)
	req.Zero = false
	if action == mdns.MsgRejectNotImplemented {
		req.Opcode = opcode
		req.Rcode = mdns.RcodeNotImplemented
	}
	req.Ns, req.Answer, req.Extra = nil, nil, nil
	w.WriteMsg(req)
}

// headerLen is the length of a DNS header.
const headerLen = 12

// udpWriter answers one UDP client for ServeDNS.
type udpWriter struct {
	pc *net.UDPConn
	to netip.AddrPort
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.pc.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.to) }

func (w *udpWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return fmt.Errorf("dns: pack answer: %w", err)
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) { return w.pc.WriteToUDPAddrPort(b, w.to) }
func (w *udpWriter) Close() error                { return nil }
func (w *udpWriter) TsigStatus() error           { return nil } // no TSIG, as miekg without a provider
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}

package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// served is a server under test on loopback, and the addresses to ask it.
type served struct {
	srv      *Server
	udp, tcp string
	reg      *prometheus.Registry
	// stop stops the server and returns what Serve returned; the test's
	// cleanup calls it too.
	stop func() error
}

// serve starts a server on 127.0.0.1 (UDP and TCP, ports of the kernel's
// choice) for the rest of the test.
func serve(t *testing.T, upstreams ...string) *served {
	t.Helper()
	return serveWith(t, 500*time.Millisecond, upstreams...)
}

// serveWith is serve with forward as the ForwardTimeout.
func serveWith(t *testing.T, forward time.Duration, upstreams ...string) *served {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(Config{
		Domain:         "cluster.local",
		Upstreams:      func() []string { return upstreams },
		ForwardTimeout: forward,
		Registerer:     reg,
		Logger:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, l := loopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &served{srv: s, udp: pc.LocalAddr().String(), tcp: l.Addr().String(), reg: reg, stop: stop}
}

func loopback(t testing.TB) (*net.UDPConn, net.Listener) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return pc, l
}

// ask sends one query over network ("udp" or "tcp") and fails the test on
// a transport error. edns 0 sends no OPT record.
func (s *served) ask(t *testing.T, network, name string, qtype uint16, edns uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	addr := s.udp
	if network == "tcp" {
		addr = s.tcp
	}
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", mdns.TypeToString[qtype], name, network, err)
	}
	return r
}

var web = Service{
	Name: "web", Addr: netip.MustParseAddr("10.96.0.20"),
	Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80}, {Name: "metrics", Protocol: "TCP", Port: 9100}, {Protocol: "UDP", Port: 53}},
}

// rrs renders records without their TTL column's tabs, for comparison.
func rrs(rs []mdns.RR) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = strings.Join(strings.Fields(r.String()), " ")
	}
	return out
}

func TestServer(t *testing.T) {
	s := serve(t)
	s.srv.Update([]Service{web})

	cases := []struct {
		name        string
		qname       string
		qtype       uint16
		rcode       int
		answer      []string
		extra       []string
		negativeSOA bool
	}{
		{
			name: "full_name_is_the_portal", qname: "web.svc.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"web.svc.cluster.local. 5 IN A 10.96.0.20"},
		},
		{
			name: "short_name_is_the_portal", qname: "web.", qtype: mdns.TypeA,
			answer: []string{"web. 5 IN A 10.96.0.20"},
		},
		{
			name: "names_compare_in_any_case_and_answer_as_asked", qname: "WeB.SVC.Cluster.Local.", qtype: mdns.TypeA,
			answer: []string{"WeB.SVC.Cluster.Local. 5 IN A 10.96.0.20"},
		},
		{
			name: "srv_of_a_named_port_points_at_the_full_name", qname: "_http._tcp.web.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"_http._tcp.web.svc.cluster.local. 5 IN SRV 0 100 80 web.svc.cluster.local."},
			extra:  []string{"web.svc.cluster.local. 5 IN A 10.96.0.20"},
		},
		{
			name: "srv_of_the_service_lists_its_named_ports", qname: "web.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{
				"web.svc.cluster.local. 5 IN SRV 0 100 80 web.svc.cluster.local.",
				"web.svc.cluster.local. 5 IN SRV 0 100 9100 web.svc.cluster.local.",
			},
			extra: []string{"web.svc.cluster.local. 5 IN A 10.96.0.20"},
		},
		{
			name: "srv_with_the_wrong_protocol_is_nxdomain", qname: "_http._udp.web.svc.cluster.local.", qtype: mdns.TypeSRV,
			rcode: mdns.RcodeNameError, negativeSOA: true,
		},
		{
			name: "a_query_for_a_port_name_is_nodata", qname: "_http._tcp.web.svc.cluster.local.", qtype: mdns.TypeA,
			negativeSOA: true,
		},
		{
			name: "other_types_of_a_service_are_nodata", qname: "web.svc.cluster.local.", qtype: mdns.TypeAAAA,
			negativeSOA: true,
		},
		{
			name: "unknown_service_is_nxdomain", qname: "nope.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, negativeSOA: true,
		},
		{
			name: "a_name_below_a_service_is_nxdomain", qname: "x.web.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, negativeSOA: true,
		},
		{
			name: "svc_itself_exists", qname: "svc.cluster.local.", qtype: mdns.TypeA,
			negativeSOA: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				r := s.ask(t, network, c.qname, c.qtype, 0)
				if r.Rcode != c.rcode {
					t.Errorf("%s: rcode %s, want %s", network, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
				}
				if !r.Authoritative {
					t.Errorf("%s: answer not authoritative", network)
				}
				if got := rrs(r.Answer); !slices.Equal(got, c.answer) {
					t.Errorf("%s: answer\n%q\nwant\n%q", network, got, c.answer)
				}
				if got := rrs(r.Extra); !slices.Equal(got, c.extra) {
					t.Errorf("%s: extra\n%q\nwant\n%q", network, got, c.extra)
				}
				soa := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == mdns.TypeSOA && r.Ns[0].(*mdns.SOA).Minttl == TTL
				if soa != c.negativeSOA {
					t.Errorf("%s: authority %q, want an SOA with minimum %d: %v", network, rrs(r.Ns), TTL, c.negativeSOA)
				}
			}
		})
	}
}

func TestUpdateIsAnsweredAtOnceAndRemovedServicesGoAway(t *testing.T) {
	s := serve(t)
	if r := s.ask(t, "udp", "web.svc.cluster.local.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("before Update: %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
	s.srv.Update([]Service{web})
	if r := s.ask(t, "udp", "web.svc.cluster.local.", mdns.TypeA, 0); len(r.Answer) != 1 {
		t.Fatalf("after Update: %q, want the portal", rrs(r.Answer))
	}
	moved := web
	moved.Addr = netip.MustParseAddr("10.96.0.21")
	s.srv.Update([]Service{moved})
	if r := s.ask(t, "udp", "web.svc.cluster.local.", mdns.TypeA, 0); len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.96.0.21" {
		t.Fatalf("after a change: %q, want 10.96.0.21", rrs(r.Answer))
	}
	s.srv.Update(nil)
	if r := s.ask(t, "udp", "web.svc.cluster.local.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("after removal: %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
}

func TestEDNSRequestGetsOPTAndLocalAnswersFitTheClientsSize(t *testing.T) {
	s := serve(t)
	big := Service{Name: "big", Addr: web.Addr}
	for i := range 40 {
		big.Ports = append(big.Ports, Port{Name: fmt.Sprintf("port-%d", i), Protocol: "TCP", Port: 1000 + i})
	}
	s.srv.Update([]Service{big})

	r := s.ask(t, "udp", "big.svc.cluster.local.", mdns.TypeSRV, 0)
	if !r.Truncated {
		t.Errorf("40 SRV records over UDP without EDNS: not truncated (%d records)", len(r.Answer))
	}
	r = s.ask(t, "udp", "big.svc.cluster.local.", mdns.TypeSRV, 4096)
	if r.IsEdns0() == nil {
		t.Error("a query with OPT got an answer without OPT")
	}
	if r.Truncated || len(r.Answer) != 40 {
		t.Errorf("with a 4096-byte buffer: truncated %v, %d records, want all 40", r.Truncated, len(r.Answer))
	}
	r = s.ask(t, "tcp", "big.svc.cluster.local.", mdns.TypeSRV, 0)
	if r.Truncated || len(r.Answer) != 40 {
		t.Errorf("over TCP: truncated %v, %d records, want all 40", r.Truncated, len(r.Answer))
	}
}

// upstream is a resolver the test runs on 127.0.0.1: it answers
// example.test. with one A record, large.test. with 30 TXT records (more
// than 512 bytes), and records the EDNS size of each query it gets.
type upstream struct {
	udp, tcp string
	mu       sync.Mutex
	sizes    []uint16 // 0: no OPT
	nets     []string
}

func runUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	pc, l := loopback(t)
	u.udp, u.tcp = pc.LocalAddr().String(), l.Addr().String()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.mu.Lock()
		var size uint16
		if opt := r.IsEdns0(); opt != nil {
			size = opt.UDPSize()
		}
		u.sizes = append(u.sizes, size)
		u.nets = append(u.nets, w.LocalAddr().Network())
		u.mu.Unlock()
		m := new(mdns.Msg)
		m.SetReply(r)
		switch r.Question[0].Name {
		case "example.test.":
			a, _ := mdns.NewRR("example.test. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, a)
		case "large.test.":
			for i := range 30 {
				rr, _ := mdns.NewRR("large.test. 60 IN TXT \"" + strings.Repeat("t", 20) + string(rune('a'+i%26)) + "\"")
				m.Answer = append(m.Answer, rr)
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
			size := mdns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	udp := &mdns.Server{PacketConn: pc, Handler: h}
	tcp := &mdns.Server{Listener: l, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return u
}

func TestOtherNamesAreForwardedAndTheAnswerPassedThrough(t *testing.T) {
	up := runUpstream(t)
	// The server forwards UDP to the upstream's UDP port and TCP to its
	// TCP port; the kernel chose different numbers, so give both.
	for _, network := range []string{"udp", "tcp"} {
		target := up.udp
		if network == "tcp" {
			target = up.tcp
		}
		s := serve(t, target)
		s.srv.Update([]Service{web})
		r := s.ask(t, network, "example.test.", mdns.TypeA, 0)
		if got, want := rrs(r.Answer), []string{"example.test. 60 IN A 192.0.2.7"}; !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", network, got, want)
		}
		if r := s.ask(t, network, "missing.test.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError || r.Authoritative {
			t.Errorf("%s: upstream NXDOMAIN came back as %s (authoritative %v)", network, mdns.RcodeToString[r.Rcode], r.Authoritative)
		}
		// A name outside svc.cluster.local that is not a service's bare
		// name is not ours, even under the cluster domain.
		if r := s.ask(t, network, "web.cluster.local.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError || r.Authoritative {
			t.Errorf("%s: web.cluster.local. answered locally", network)
		}
	}
}

func TestTruncatedUpstreamAnswerMakesTheClientRetryOverTCP(t *testing.T) {
	up := runUpstream(t)
	// One address for both transports, as a real resolver has: an upstream
	// on 127.0.0.1 with the same port for UDP and TCP.
	addr := sameport(t, up)
	s := serve(t, addr)

	r := s.ask(t, "udp", "large.test.", mdns.TypeTXT, 0)
	if !r.Truncated {
		t.Fatalf("UDP without EDNS: not truncated (%d records)", len(r.Answer))
	}
	r = s.ask(t, "tcp", "large.test.", mdns.TypeTXT, 0)
	if r.Truncated || len(r.Answer) != 30 {
		t.Fatalf("TCP: truncated %v, %d records, want 30", r.Truncated, len(r.Answer))
	}
	r = s.ask(t, "udp", "large.test.", mdns.TypeTXT, 4096)
	if r.Truncated || len(r.Answer) != 30 || r.IsEdns0() == nil || r.IsEdns0().UDPSize() != 4096 {
		t.Fatalf("UDP with a 4096-byte buffer: truncated %v, %d records, OPT %v; want all 30 and the OPT", r.Truncated, len(r.Answer), r.IsEdns0())
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if want := []uint16{0, 0, 4096}; !slices.Equal(up.sizes, want) {
		t.Errorf("upstream saw EDNS sizes %v, want the client's own %v", up.sizes, want)
	}
	if want := []string{"udp", "tcp", "udp"}; !slices.Equal(up.nets, want) {
		t.Errorf("upstream was asked over %v, want %v", up.nets, want)
	}
}

// sameport puts a UDP-to-UDP relay in front of the upstream's UDP port on
// the number of its TCP port, so that one HOST:PORT serves both.
func sameport(t *testing.T, up *upstream) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", up.tcp)
	if err != nil {
		t.Fatalf("UDP on the upstream's TCP port: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			c := &mdns.Client{Net: "udp", UDPSize: 65535}
			m := new(mdns.Msg)
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			r, _, err := c.Exchange(m, up.udp)
			if err != nil {
				continue
			}
			b, _ := r.Pack()
			pc.WriteTo(b, from)
		}
	}()
	return up.tcp
}

func TestNoUpstreamAnsweringIsServfailAndTheNextUpstreamIsTried(t *testing.T) {
	up := runUpstream(t)
	// A UDP socket that never answers, then the real upstream.
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	s := serve(t, silent.LocalAddr().String(), up.udp)
	if r := s.ask(t, "udp", "example.test.", mdns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("with a silent first upstream: %s %q, want the second's answer", mdns.RcodeToString[r.Rcode], rrs(r.Answer))
	}
	s = serve(t, silent.LocalAddr().String())
	if r := s.ask(t, "udp", "example.test.", mdns.TypeA, 0); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("with no upstream answering: %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
}

func TestQueriesAreCountedByTypeAndResult(t *testing.T) {
	up := runUpstream(t)
	s := serve(t, up.udp)
	s.srv.Update([]Service{web})
	s.ask(t, "udp", "web.svc.cluster.local.", mdns.TypeA, 0)
	s.ask(t, "udp", "web.", mdns.TypeA, 0)
	s.ask(t, "udp", "web.svc.cluster.local.", mdns.TypeAAAA, 0)
	s.ask(t, "udp", "nope.svc.cluster.local.", mdns.TypeA, 0)
	s.ask(t, "udp", "example.test.", mdns.TypeA, 0)
	s.ask(t, "udp", "x.test.", mdns.TypeNAPTR, 0)

	want := `
# HELP cuelet_dns_queries_total DNS queries answered, by query type and result (answer, nodata, nxdomain, forwarded, servfail, refused).
# TYPE cuelet_dns_queries_total counter
cuelet_dns_queries_total{result="answer",type="A"} 2
cuelet_dns_queries_total{result="forwarded",type="A"} 1
cuelet_dns_queries_total{result="forwarded",type="other"} 1
cuelet_dns_queries_total{result="nodata",type="AAAA"} 1
cuelet_dns_queries_total{result="nxdomain",type="A"} 1
`
	if err := testutil.GatherAndCompare(s.reg, strings.NewReader(want), "cuelet_dns_queries_total"); err != nil {
		t.Error(err)
	}
}

func TestResolvConfSkipsTheServersOwnAddressAndFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(content string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write("search example.org\nnameserver 127.0.0.53\nnameserver 10.96.0.10\n", base)
	ups := ResolvConf(path, netip.MustParseAddr("10.96.0.10"), zerolog.Nop())
	if got, want := ups(), []string{"127.0.0.53:53"}; !slices.Equal(got, want) {
		t.Errorf("upstreams %q, want %q", got, want)
	}
	write("nameserver 127.0.0.54\n", base.Add(time.Second))
	if got, want := ups(), []string{"127.0.0.54:53"}; !slices.Equal(got, want) {
		t.Errorf("after a change: %q, want %q", got, want)
	}
	os.Remove(path)
	if got, want := ups(), []string{"127.0.0.54:53"}; !slices.Equal(got, want) {
		t.Errorf("with the file gone: %q, want the last list %q", got, want)
	}
}

func TestRunAnswersOnEachOfItsUDPSocketsAndASecondRunOnTheAddressFails(t *testing.T) {
	// Four read loops, whatever the machine: clients land on each by the
	// kernel's hash of their address.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	s, err := New(Config{Domain: "cluster.local", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s.Update([]Service{{Name: "web", Addr: netip.MustParseAddr("10.96.0.7")}})
	l, err := net.Listen("tcp4", "127.0.0.1:0") // a port free for TCP; UDP is checked by Run
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, addr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	m := new(mdns.Msg)
	m.SetQuestion("web.svc.cluster.local.", mdns.TypeA)
	c := &mdns.Client{Net: "udp", Timeout: time.Second}
	for r, _, err := c.Exchange(m, addr.String()); err != nil || len(r.Answer) != 1; r, _, err = c.Exchange(m, addr.String()) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("run ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// 32 clients, 32 source ports: with four sockets each is all but
	// certain to get some; every client must be answered.
	for i := range 32 {
		r, _, err := c.Exchange(m, addr.String())
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("client %d: %v %v", i, err, r)
		}
	}
	// SO_REUSEPORT lets the UDP sockets share the address; the TCP
	// listener does not, so a second server there fails instead of
	// quietly taking a share of the queries.
	if err := s.Run(ctx, addr); err == nil || !strings.Contains(err.Error(), "listen tcp") {
		t.Errorf("second Run on %s: %v, want a listen tcp error", addr, err)
	}
}

package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// benchServices is the name set both servers answer: 1,000 services.
func benchServices() []Service {
	var services []Service
	for i := range 1000 {
		services = append(services, Service{
			Name: fmt.Sprintf("svc-%04d", i), Addr: netip.AddrFrom4([4]byte{10, 96, byte(1 + i/250), byte(i % 250)}),
			Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80}},
		})
	}
	return services
}

// TestMain doubles as the benchmark's server process: with
// CUELET_DNS_BENCH_SERVER=ADDR set, the test binary is the agent's DNS
// server for benchServices on ADDR (UDP and TCP) until killed, so that
// the server has a process of its own, as in the agent and as CoreDNS,
// instead of sharing a scheduler and a heap with the load generator.
func TestMain(m *testing.M) {
	if addr := os.Getenv("CUELET_DNS_BENCH_SERVER"); addr != "" {
		os.Exit(benchServer(addr))
	}
	os.Exit(m.Run())
}

// With CUELET_DNS_BENCH_PROFILE=DIR as well, the server writes a CPU, a
// mutex, a block and an allocation profile of itself to DIR when it is
// stopped (SIGTERM), and prints its queries, allocations per query and GC
// pauses on stderr: the load generator's own -cpuprofile would profile
// the wrong process.
func benchServer(addr string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	reg := prometheus.NewRegistry()
	s, err := New(Config{Domain: "cluster.local", Logger: zerolog.Nop(), Registerer: reg})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s.Update(benchServices())
	if v := os.Getenv("CUELET_DNS_BENCH_SOCKETS"); v != "" {
		fmt.Sscan(v, &s.udpSockets)
	}
	dir := os.Getenv("CUELET_DNS_BENCH_PROFILE")
	if dir != "" {
		finish, err := startProfiles(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			if err := finish(reg); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	if err := s.Run(ctx, netip.MustParseAddrPort(addr)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startProfiles starts the server's profiles; finish writes them to dir
// and prints the allocations and GC pauses per query.
func startProfiles(dir string) (finish func(prometheus.Gatherer) error, err error) {
	cpu, err := os.Create(filepath.Join(dir, "server-cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return nil, err
	}
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(10_000) // one sample per 10 µs blocked
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	return func(g prometheus.Gatherer) error {
		pprof.StopCPUProfile()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		var errs []error
		for _, name := range []string{"mutex", "block", "allocs"} {
			f, err := os.Create(filepath.Join(dir, "server-"+name+".pprof"))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, pprof.Lookup(name).WriteTo(f, 0), f.Close())
		}
		var queries float64
		mfs, err := g.Gather()
		errs = append(errs, err)
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				queries += m.GetCounter().GetValue()
			}
		}
		q := max(queries, 1)
		fmt.Fprintf(os.Stderr, "dns bench server: %.0f queries, %.1f allocs and %.0f B per query, %d GCs, pauses %s total, %s max of the last 256\n",
			queries, float64(after.Mallocs-before.Mallocs)/q, float64(after.TotalAlloc-before.TotalAlloc)/q,
			after.NumGC-before.NumGC, time.Duration(after.PauseTotalNs-before.PauseTotalNs), time.Duration(slices.Max(after.PauseNs[:])))
		return errors.Join(append(errs, cpu.Close())...)
	}, nil
}

// BenchmarkServerUDP is a load generator against two servers of the same
// 1,000 names on loopback, each in its own process: the agent's server
// (this test binary re-executed, see TestMain) and CoreDNS's hosts plugin,
// the peer. Clients each keep one query in flight over UDP (one socket per
// client, as resolvers in many pods would), asking for the A record of a
// service in turn, for 1, 16 and 64 clients. The two servers take turns,
// round by round (DNS_BENCH_ROUNDS, default 5; DNS_BENCH_ROUND, default
// 2s each), so that a load that changes on a shared machine falls on both;
// it reports each one's median qps and p99 over the rounds and the median
// of the per-round qps ratios (cuelet/CoreDNS). b.N is not used: run with
// -benchtime 1x.
//
//	go test -run '^$' -bench 'UDP$' -benchtime 1x ./netproxy/dns
//
// It needs a coredns binary: $COREDNS, else coredns on PATH or in
// $(go env GOPATH)/bin (`make bench-dns` installs it with go install);
// without one it skips.
func BenchmarkServerUDP(b *testing.B) {
	bin := coreDNSBinary()
	if bin == "" {
		b.Skip("no coredns binary: set COREDNS or go install github.com/coredns/coredns")
	}
	rounds, round := 5, 2*time.Second
	if v := os.Getenv("DNS_BENCH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	if v := os.Getenv("DNS_BENCH_ROUND"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		round = d
	}
	cuelet := startCuelet(b)
	coredns := startCoreDNS(b, bin)
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var cq, dq, cp, dp, ratio []float64
			for range rounds {
				q, p := queryLoad(b, cuelet, clients, round, 0)
				cq, cp = append(cq, q), append(cp, p)
				q, p = queryLoad(b, coredns, clients, round, 0)
				dq, dp = append(dq, q), append(dp, p)
				ratio = append(ratio, cq[len(cq)-1]/dq[len(dq)-1])
			}
			b.ReportMetric(median(cq), "cuelet-qps")
			b.ReportMetric(median(dq), "coredns-qps")
			b.ReportMetric(median(ratio), "qps-ratio")
			b.ReportMetric(median(cp), "cuelet-p99-µs")
			b.ReportMetric(median(dp), "coredns-p99-µs")
			// At full speed the p99 of a closed loop is mostly the queue
			// its own clients make: the faster server gets each client's
			// next query sooner. The latency at one rate both servers
			// sustain, 80 % of CoreDNS's, compares the servers alone.
			rate := 0.8 * median(dq)
			var cr, dr []float64
			for range rounds {
				_, p := queryLoad(b, cuelet, clients, round, rate)
				cr = append(cr, p)
				_, p = queryLoad(b, coredns, clients, round, rate)
				dr = append(dr, p)
			}
			b.ReportMetric(rate, "paced-qps")
			b.ReportMetric(median(cr), "cuelet-paced-p99-µs")
			b.ReportMetric(median(dr), "coredns-paced-p99-µs")
			b.ReportMetric(0, "ns/op") // b.N is not the measure
		})
	}
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// startCuelet runs the agent's server in a child process (see TestMain)
// and returns its address once it answers.
func startCuelet(b *testing.B) string {
	addr := freeUDPAddr(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CUELET_DNS_BENCH_SERVER="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// SIGTERM, so that it writes its profiles (see benchServer).
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	waitAnswer(b, addr)
	return addr
}

// startCoreDNS serves benchServices from CoreDNS's hosts plugin and
// returns its address once it answers.
func startCoreDNS(b *testing.B, bin string) string {
	dir := b.TempDir()
	var hosts strings.Builder
	for _, s := range benchServices() {
		fmt.Fprintf(&hosts, "%s %s.svc.cluster.local\n", s.Addr, s.Name)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	addr := freeUDPAddr(b)
	host, port, _ := net.SplitHostPort(addr)
	// hosts answers what it has and NXDOMAIN for the rest of its zone, as
	// the agent's server does under svc.cluster.local; no cache, so both
	// compute every answer; one process, GOMAXPROCS as the agent.
	corefile := fmt.Sprintf(".:%s {\n\tbind %s\n\thosts %s cluster.local {\n\t\tttl 5\n\t}\n}\n", port, host, filepath.Join(dir, "hosts"))
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", filepath.Join(dir, "Corefile"), "-quiet")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitAnswer(b, addr)
	return addr
}

// queryLoad keeps clients queries in flight against addr for d and
// returns the queries answered per second and the p99 latency in µs. With
// rate > 0 the clients together send no more than rate queries per
// second, each at its own even pace; a query is timed from when it is
// sent.
func queryLoad(b *testing.B, addr string, clients int, d time.Duration, rate float64) (qps, p99 float64) {
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := (&mdns.Client{Net: "udp", Timeout: 2 * time.Second}).Dial(addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			var mine []time.Duration
			m := new(mdns.Msg)
			var every time.Duration
			if rate > 0 {
				every = time.Duration(float64(clients) / rate * float64(time.Second))
			}
			next := start.Add(every * time.Duration(c) / time.Duration(clients)) // spread the clients
			for i := 0; time.Now().Before(stop); i++ {
				if every > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(every)
				}
				m.SetQuestion(fmt.Sprintf("svc-%04d.svc.cluster.local.", (c*7919+i)%1000), mdns.TypeA)
				t0 := time.Now()
				if err := conn.WriteMsg(m); err != nil {
					b.Error(err)
					return
				}
				r, err := conn.ReadMsg()
				if err != nil || len(r.Answer) != 1 {
					b.Errorf("query: %v %v", err, r)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lats) == 0 {
		b.Fatalf("%s answered nothing", addr)
	}
	slices.Sort(lats)
	return float64(len(lats)) / elapsed.Seconds(), float64(lats[len(lats)*99/100].Microseconds())
}

// coreDNSBinary finds the peer's binary, or "".
func coreDNSBinary() string {
	if p := os.Getenv("COREDNS"); p != "" {
		return p
	}
	if p, err := exec.LookPath("coredns"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "coredns")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// freeUDPAddr is a loopback UDP address nothing listens on.
func freeUDPAddr(b *testing.B) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// waitAnswer waits until the server at addr answers a query.
func waitAnswer(b *testing.B, addr string) {
	c := &mdns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	m := new(mdns.Msg)
	m.SetQuestion("svc-0000.svc.cluster.local.", mdns.TypeA)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, _, err := c.Exchange(m, addr)
		if err == nil && len(r.Answer) == 1 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s does not answer: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkServeDNSAnswer is the work of one local answer past the socket:
// the request unpacked (as miekg's server does), looked up, the answer
// packed. Run with -benchmem: allocations per query are what the server
// leaves to its GC under load.
func BenchmarkServeDNSAnswer(b *testing.B) {
	s, err := New(Config{Domain: "cluster.local", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	s.Update(benchServices())
	for _, qtype := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		b.Run(mdns.TypeToString[qtype], func(b *testing.B) {
			wires := benchQueries(b, qtype)
			w := &packWriter{}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := new(mdns.Msg)
				if err := r.Unpack(wires[i%len(wires)]); err != nil {
					b.Fatal(err)
				}
				s.ServeDNS(w, r)
				i++
			}
			if w.n != i || w.last == 0 {
				b.Fatalf("%d answers of %d queries, last %d bytes", w.n, i, w.last)
			}
		})
	}
}

// benchQueries packs a query of qtype for each of benchServices' names.
func benchQueries(b *testing.B, qtype uint16) [][]byte {
	var wires [][]byte
	for i := range 1000 {
		m := new(mdns.Msg)
		m.SetQuestion(fmt.Sprintf("svc-%04d.svc.cluster.local.", i), qtype)
		w, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		wires = append(wires, w)
	}
	return wires
}

// BenchmarkAnswerPlain is the read loop's answer to an A or AAAA query
// for a service (see serveUDP), the counterpart of
// BenchmarkServeDNSAnswer.
func BenchmarkAnswerPlain(b *testing.B) {
	z := newZone("cluster.local", benchServices())
	for _, qtype := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		b.Run(mdns.TypeToString[qtype], func(b *testing.B) {
			wires := benchQueries(b, qtype)
			out := make([]byte, 0, mdns.MinMsgSize)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ans, _, _, ok := z.answerPlain(wires[i%len(wires)], out[:0])
				if !ok || len(ans) == 0 {
					b.Fatalf("no answer to %d", i)
				}
				i++
			}
		})
	}
}

// packWriter is a UDP ResponseWriter that packs what it is given, as
// miekg's writer does, and keeps the last answer's bytes when keep is set.
type packWriter struct {
	n, last int
	keep    bool
	wire    []byte
}

// The addresses are made once, as a socket's are.
var (
	benchLocal  = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	benchRemote = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
)

func (w *packWriter) LocalAddr() net.Addr  { return benchLocal }
func (w *packWriter) RemoteAddr() net.Addr { return benchRemote }
func (w *packWriter) WriteMsg(m *mdns.Msg) error {
	buf, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}
func (w *packWriter) Write(buf []byte) (int, error) {
	w.n++
	w.last = len(buf)
	if w.keep {
		w.wire = slices.Clone(buf)
	}
	return len(buf), nil
}
func (w *packWriter) Close() error        { return nil }
func (w *packWriter) TsigStatus() error   { return nil }
func (w *packWriter) TsigTimersOnly(bool) {}
func (w *packWriter) Hijack()             {}

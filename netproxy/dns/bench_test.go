package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
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

// BenchmarkServerUDP is a load generator: 1,000 services, clients that
// each keep one query in flight over UDP on loopback (one socket per
// client, as resolvers in many pods would), asking for the A record of a
// service in turn. It reports queries per second and the p99 latency.
// BenchmarkCoreDNSUDP runs the same load against CoreDNS, the peer.
//
//	go test -run '^$' -bench 'UDP$' -benchtime 5s ./netproxy/dns
func BenchmarkServerUDP(b *testing.B) {
	s, err := New(Config{Domain: "cluster.local", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	s.Update(benchServices())
	pc, l := loopback(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, pc, l)
	queryLoad(b, pc.LocalAddr().String())
}

// BenchmarkCoreDNSUDP serves the same 1,000 names from CoreDNS's hosts
// plugin on loopback and puts the same load on it. It needs a coredns
// binary: $COREDNS, else coredns on PATH or in $(go env GOPATH)/bin
// (`make bench-dns` installs it with go install); without one it skips.
func BenchmarkCoreDNSUDP(b *testing.B) {
	bin := coreDNSBinary()
	if bin == "" {
		b.Skip("no coredns binary: set COREDNS or go install github.com/coredns/coredns")
	}
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
	queryLoad(b, addr)
}

// queryLoad runs the load of the benchmarks against addr, for 1, 16 and
// 64 clients, and reports qps and p99-µs.
func queryLoad(b *testing.B, addr string) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var (
				mu   sync.Mutex
				lats []time.Duration
				wg   sync.WaitGroup
			)
			per := max(b.N/clients, 1)
			start := time.Now()
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
					mine := make([]time.Duration, 0, per)
					m := new(mdns.Msg)
					for i := range per {
						m.SetQuestion(fmt.Sprintf("svc-%04d.svc.cluster.local.", (c*per+i)%1000), mdns.TypeA)
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
				return
			}
			slices.Sort(lats)
			b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "qps")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
		})
	}
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

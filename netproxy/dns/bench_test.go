package dns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// BenchmarkServerUDP is a load generator: 1,000 services, clients that
// each keep one query in flight over UDP on loopback (one socket per
// client, as resolvers in many pods would), asking for the A record of a
// service in turn. It reports queries per second and the p99 latency.
//
//	go test -run '^$' -bench ServerUDP -benchtime 5s ./netproxy/dns
func BenchmarkServerUDP(b *testing.B) {
	s, err := New(Config{Domain: "cluster.local", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	var services []Service
	for i := range 1000 {
		services = append(services, Service{
			Name: fmt.Sprintf("svc-%04d", i), Addr: netip.AddrFrom4([4]byte{10, 96, byte(1 + i/250), byte(i % 250)}),
			Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80}},
		})
	}
	s.Update(services)
	pc, l := loopback(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, pc, l)
	addr := pc.LocalAddr().String()

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

package netproxy

import (
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTCPConnectRequestClose is the harness's crr test in one
// process: parallel clients each connect through the proxy, send 64
// bytes, read the echo and close. cpu-ns/op is the CPU time of the whole
// process (user and system) per connection, steadier than ns/op on a
// shared machine. Client and backend run in the same process and are
// part of every figure, so compare runs of this benchmark with each
// other, not with bench/proxy (which charges the proxy alone, on a core
// of its own).
//
//	go test -run '^$' -bench TCPConnectRequestClose -benchtime 20000x -cpu 1 ./netproxy/
func BenchmarkTCPConnectRequestClose(b *testing.B) {
	back := startBenchBackend(b)
	p := startProxy(b, Config{})
	port := freePort(b)
	mustUpdate(b, p, svc("bench", port, back, back, back))
	addr := portal(port).String()

	b.SetParallelism(4) // the harness's CRR_CONNS
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		msg := make([]byte, 64)
		for pb.Next() {
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Write(msg); err != nil {
				b.Error(err)
			}
			if _, err := io.ReadFull(c, msg); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startBenchBackend is an echo server that keeps no list of its
// connections, for benchmarks that open hundreds of thousands.
func startBenchBackend(tb testing.TB) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

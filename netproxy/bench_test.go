package netproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// benchProxyEnv makes the test binary a bare proxy (see TestMain), for
// benchmarks that measure the proxy apart from its clients and backends.
const benchProxyEnv = "NETPROXY_BENCH_PROXY"

func TestMain(m *testing.M) {
	if spec := os.Getenv(benchProxyEnv); spec != "" {
		if err := runBenchProxy(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBenchProxy serves one TCP service, "PORT ENDPOINT...", on
// 127.0.0.1, says "ready" on stdout and serves until stdin closes.
func runBenchProxy(spec string) error {
	f := strings.Fields(spec)
	port, err := strconv.Atoi(f[0])
	if err != nil {
		return err
	}
	var eps []netip.AddrPort
	for _, s := range f[1:] {
		ep, err := netip.ParseAddrPort(s)
		if err != nil {
			return err
		}
		eps = append(eps, ep)
	}
	p, err := New(Config{Logger: zerolog.Nop()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if errs := p.Update([]Service{svc("bench", port, eps...)}); errs != nil {
		return fmt.Errorf("update: %v", errs)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// BenchmarkTCPConnectRequestClose is the harness's crr test (see
// netproxy/bench): four parallel clients each connect through the proxy,
// send 64 bytes, read the echo and close. The proxy runs in a process of
// its own, pinned to one CPU like in the harness (so GOMAXPROCS is 1), and
// the figures are its own:
//
//   - proxy-cpu-ns/op: its CPU time (user and system, all threads) per
//     connection, which load elsewhere on the machine barely moves;
//   - proxy-ctxsw/op: its context switches per connection.
//
// Clients and backend (one echo server for the three endpoints) run in
// the benchmark's process.
//
//	go test -run '^$' -bench TCPConnectRequestClose -benchtime 20000x ./netproxy/
func BenchmarkTCPConnectRequestClose(b *testing.B) {
	back := startBenchBackend(b)
	port := freePort(b)
	pid := startBenchProxy(b, fmt.Sprintf("%d %s %s %s", port, back, back, back))
	addr := portal(port).String()

	b.SetParallelism(4) // the harness's CRR_CONNS
	cpu0, sw0 := taskStats(b, pid)
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
	cpu1, sw1 := taskStats(b, pid)
	b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "proxy-cpu-ns/op")
	b.ReportMetric(float64(sw1-sw0)/float64(b.N), "proxy-ctxsw/op")
}

// startBenchProxy runs this test binary as a proxy (see runBenchProxy) on
// the machine's last CPU and returns its pid.
func startBenchProxy(b *testing.B, spec string) int {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchProxyEnv+"="+spec)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	// The child inherits the CPU affinity of the thread that forks it.
	runtime.LockOSThread()
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		b.Fatal(err)
	}
	for cpu := runtime.NumCPU() - 1; cpu >= 0; cpu-- {
		if all.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	unix.SchedSetaffinity(0, &one)
	err = cmd.Start()
	unix.SchedSetaffinity(0, &all)
	runtime.UnlockOSThread()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("bench proxy: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// taskStats sums the CPU time (ns) and the context switches of every
// thread of process pid.
func taskStats(b *testing.B, pid int) (cpu, switches int64) {
	b.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of %d: %v", pid, err)
	}
	for _, t := range tasks {
		// schedstat: time on the CPU (ns), time waiting, timeslices.
		if s, err := os.ReadFile(t + "/schedstat"); err == nil {
			if f := strings.Fields(string(s)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				cpu += n
			}
		}
		s, err := os.ReadFile(t + "/status")
		if err != nil {
			continue // the thread is gone
		}
		for _, line := range strings.Split(string(s), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "voluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				switches += n
			}
		}
	}
	return cpu, switches
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

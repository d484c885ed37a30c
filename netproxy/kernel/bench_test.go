package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

// genID reads the nftables ruleset generation of ns, which every
// committed transaction moves on by one.
func genID(tb testing.TB, ns netns.NsHandle) uint32 {
	tb.Helper()
	var id uint32
	testenv.MustInNS(tb, ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		// nlmsghdr (16 bytes) + nfgenmsg (4 bytes)
		req := make([]byte, 20)
		binary.NativeEndian.PutUint32(req[0:], 20)
		binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN)
		binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
		req[16] = unix.AF_UNSPEC
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		buf := make([]byte, 4096)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN || len(m.Data) < 4 {
				continue
			}
			for b := m.Data[4:]; len(b) >= 4; {
				l := int(binary.NativeEndian.Uint16(b[0:]))
				typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff
				if l < 4 || l > len(b) {
					break
				}
				if typ == unix.NFTA_GEN_ID && l >= 8 {
					id = binary.BigEndian.Uint32(b[4:8])
					return nil
				}
				b = b[(l+3)&^3:]
			}
		}
		return fmt.Errorf("no generation in the answer")
	})
	return id
}

// manyServices are n services with three endpoints each; shift moves
// every endpoint, so that two calls with different shifts differ in every
// service.
func manyServices(n, shift int) []netproxy.Service {
	out := make([]netproxy.Service, 0, n)
	for i := range n {
		s := netproxy.Service{
			Name:     fmt.Sprintf("svc-%04d", i),
			PortalIP: netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)}),
			Ports:    []netproxy.Port{{Name: "http", Port: 80}},
		}
		if i%10 == 0 {
			s.SessionAffinity = netproxy.AffinityClientIP
		}
		for e := range 3 {
			k := i*3 + e + shift
			s.Ports[0].Endpoints = append(s.Ports[0].Endpoints,
				netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 240, byte(k >> 8), byte(k)}), 8080))
		}
		out = append(out, s)
	}
	return out
}

func TestKernelProxy_programs_each_change_in_one_transaction(t *testing.T) {
	tn := newTestNode(t, "10.97.0.0/16")
	p := tn.newProxy(t)
	for _, step := range []struct {
		name     string
		services []netproxy.Service
		want     uint32 // transactions
	}{
		{"first_program", manyServices(50, 0), 1},
		{"unchanged", manyServices(50, 0), 0},
		{"every_endpoint_moves", manyServices(50, 1), 1},
		{"half_the_services_go", manyServices(25, 1), 1},
	} {
		before := genID(t, tn.node)
		if errs := p.Update(step.services); errs != nil {
			t.Fatal(errs)
		}
		if got := genID(t, tn.node) - before; got != step.want {
			t.Errorf("%s: %d transactions, want %d", step.name, got, step.want)
		}
	}
	// A new agent adopts the table in one transaction too.
	before := genID(t, tn.node)
	if errs := tn.newProxy(t).Update(manyServices(25, 1)); errs != nil {
		t.Fatal(errs)
	}
	if got := genID(t, tn.node) - before; got != 1 {
		t.Errorf("adoption: %d transactions, want 1", got)
	}
}

// cpuTime is the process's user and system time so far; the kernel's
// work on a transaction happens within sendmsg, on the sender's time.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProgram measures programming n services with three endpoints
// each into an empty table (first) and replacing every endpoint of all of
// them (change), each one transaction, in a network namespace of its own.
// Besides the wall time it reports cpu-ms/op, the process's CPU time
// (user and system, so the kernel's work on the transaction too): on a
// shared machine the wall time also counts waiting for a CPU.
func BenchmarkProgram(b *testing.B) {
	for _, n := range []int{100, 1000} {
		tn := newTestNode(b, "10.97.0.0/16")
		b.Run(fmt.Sprintf("services=%d/first", n), func(b *testing.B) {
			services := manyServices(n, 0)
			var cpu time.Duration
			defer func() { b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op") }()
			for b.Loop() {
				b.StopTimer()
				if err := Remove(tn.cfg); err != nil {
					b.Fatal(err)
				}
				p, err := New(tn.cfg)
				if err != nil {
					b.Fatal(err)
				}
				before := genID(b, tn.node)
				cpu0 := cpuTime(b)
				b.StartTimer()
				errs := p.Update(services)
				b.StopTimer()
				cpu += cpuTime(b) - cpu0
				if errs != nil {
					b.Fatal(errs)
				}
				if got := genID(b, tn.node) - before; got != 1 {
					b.Fatalf("%d transactions, want 1", got)
				}
				p.Close()
				b.StartTimer()
			}
		})
		b.Run(fmt.Sprintf("services=%d/change", n), func(b *testing.B) {
			p, err := New(tn.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			sets := [][]netproxy.Service{manyServices(n, 0), manyServices(n, 1)}
			if errs := p.Update(sets[0]); errs != nil {
				b.Fatal(errs)
			}
			i := 0
			cpu0 := cpuTime(b)
			for b.Loop() {
				i++
				if errs := p.Update(sets[i%2]); errs != nil {
					b.Fatal(errs)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

package testenv

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
)

// Greeter is a server of the test's in a network namespace: it answers
// each TCP connection and each UDP datagram with the reply for the
// client's address, and counts both, so a test sees which backend a
// portal chose, what source address reached it and whether anything
// reached it at all.
type Greeter struct {
	TCP, UDP atomic.Int64
}

// StartGreeter listens on addr in ns, TCP and UDP, until the test ends.
func StartGreeter(t testing.TB, ns netns.NsHandle, addr netip.AddrPort, reply func(from netip.Addr) string) *Greeter {
	t.Helper()
	g := &Greeter{}
	var ln net.Listener
	var pc *net.UDPConn
	MustInNS(t, ns, func() error {
		var err error
		if ln, err = net.Listen("tcp4", addr.String()); err != nil {
			return err
		}
		pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.TCP.Add(1)
			c.Write([]byte(reply(c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			g.UDP.Add(1)
			pc.WriteToUDPAddrPort([]byte(reply(from.Addr())), from)
		}
	}()
	return g
}

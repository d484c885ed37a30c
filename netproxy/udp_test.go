package netproxy

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// startUDPBackend answers every datagram with name + ":" + datagram.
func startUDPBackend(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func udpSvc(name string, port int, eps ...netip.AddrPort) Service {
	return Service{
		Name:     name,
		PortalIP: loopback,
		Ports:    []Port{{Name: "dns", Protocol: "UDP", Port: port, Endpoints: eps}},
	}
}

// exchange sends msg from an unconnected socket to addr and returns the
// answer and the address it came from.
func exchange(t *testing.T, c *net.UDPConn, addr netip.AddrPort, msg string) (string, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64<<10)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no answer to %q from %s: %v", msg, addr, err)
	}
	return string(buf[:n]), from
}

func udpClient(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUDPRoundTripAnswersFromThePortalAndExpiresWhenIdle(t *testing.T) {
	be := startUDPBackend(t, "a")
	// Long enough that the session cannot expire between the two
	// exchanges and the check on a stalled machine; expiry is polled.
	p := startProxy(t, Config{UDPIdleTimeout: 1500 * time.Millisecond})
	port := freePort(t)
	mustUpdate(t, p, udpSvc("dns", port, be))

	c := udpClient(t)
	for _, msg := range []string{"one", "two"} {
		got, from := exchange(t, c, portal(port), msg)
		if got != "a:"+msg {
			t.Fatalf("answer %q, want a:%s", got, msg)
		}
		if from != portal(port) {
			t.Fatalf("answer came from %s, want the portal %s", from, portal(port))
		}
	}
	if n := p.Status()[0].Active; n != 1 {
		t.Fatalf("%d sessions, want 1 for one client", n)
	}
	testenv.Eventually(t, within, testenv.True("idle session expired", func() bool { return p.Status()[0].Active == 0 }))

	// A new datagram after expiry opens a new session.
	if got, _ := exchange(t, c, portal(port), "three"); got != "a:three" {
		t.Fatalf("answer after expiry %q", got)
	}
}

func TestUDPSessionsAreRoundRobinPerClient(t *testing.T) {
	a, b := startUDPBackend(t, "a"), startUDPBackend(t, "b")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, udpSvc("dns", port, a, b))

	c1, c2 := udpClient(t), udpClient(t)
	r1, _ := exchange(t, c1, portal(port), "x")
	r2, _ := exchange(t, c2, portal(port), "x")
	r1again, _ := exchange(t, c1, portal(port), "x")
	if r1 != "a:x" || r2 != "b:x" || r1again != "a:x" {
		t.Fatalf("answers %q %q %q, want a:x b:x a:x (one endpoint per client session)", r1, r2, r1again)
	}
}

func TestUDPExternalPortAnswersFromTheAddressTheClientUsed(t *testing.T) {
	be := startUDPBackend(t, "a")
	p := startProxy(t, Config{}) // external address 0.0.0.0
	port, ext := freePort(t), freePort(t)
	s := udpSvc("dns", port, be)
	s.Ports[0].ExternalPort = ext
	mustUpdate(t, p, s)

	// 127.0.0.2 is local too; a reply from 127.0.0.1 would be dropped by
	// a connected client, so the source must follow the destination.
	for _, dst := range []string{"127.0.0.1", "127.0.0.2"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(dst), uint16(ext))
		got, from := exchange(t, udpClient(t), to, "hi")
		if got != "a:hi" || from != to {
			t.Fatalf("to %s: answer %q from %s, want a:hi from %s", to, got, from, to)
		}
	}
}

func TestUDPRemovedEndpointLosesItsSessions(t *testing.T) {
	a, b := startUDPBackend(t, "a"), startUDPBackend(t, "b")
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, udpSvc("dns", port, a))
	c := udpClient(t)
	if got, _ := exchange(t, c, portal(port), "x"); got != "a:x" {
		t.Fatalf("answer %q", got)
	}
	mustUpdate(t, p, udpSvc("dns", port, b))
	if got, _ := exchange(t, c, portal(port), "x"); got != "b:x" {
		t.Fatalf("after removing a the same client got %q, want b:x", got)
	}
}

func TestUDPDeadEndpointSessionIsDroppedAndRepicked(t *testing.T) {
	live := startUDPBackend(t, "live")
	dead := func() netip.AddrPort {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).AddrPort()
	}()
	p := startProxy(t, Config{})
	port := freePort(t)
	mustUpdate(t, p, udpSvc("dns", port, dead, live))
	c := udpClient(t)
	// The first datagram goes to the dead endpoint and is lost (UDP); the
	// ICMP port unreachable ends that session, so a retry, like a DNS
	// client's, reaches the live one.
	c.WriteToUDPAddrPort([]byte("lost"), portal(port))
	testenv.Eventually(t, within, testenv.True("dead session dropped", func() bool {
		c.WriteToUDPAddrPort([]byte("retry"), portal(port))
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 100)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		return err == nil && string(buf[:n]) == "live:retry"
	}))
}

func TestUDPExternalPortMayShareItsNumberWithAPortal(t *testing.T) {
	web, other := startUDPBackend(t, "web"), startUDPBackend(t, "other")
	p := startProxy(t, Config{})
	port := freePort(t)
	s := udpSvc("web", port, web)
	s.Ports[0].ExternalPort = port
	o := udpSvc("other", port, other)
	o.PortalIP = netip.MustParseAddr("127.0.0.3")
	mustUpdate(t, p, s, o)

	for addr, want := range map[string]string{"127.0.0.1": "web:x", "127.0.0.3": "other:x"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port))
		if got, from := exchange(t, udpClient(t), to, "x"); got != want || from != to {
			t.Errorf("%s answered %q from %s, want %q from it", to, got, from, want)
		}
	}
}

// SPEC §7: UDP to a service port without ready endpoints gets ICMP port
// unreachable, as TCP gets a reset; a connected client sees it as
// "connection refused". The portal and an external port on a wildcard
// listener both refuse, and once an endpoint is back the port answers.
func TestUDP_to_a_port_without_endpoints_gets_port_unreachable(t *testing.T) {
	p := startProxy(t, Config{})
	port, ext := freePort(t), freePort(t)
	s := udpSvc("dns", port)
	s.Ports[0].ExternalPort = ext
	mustUpdate(t, p, s)

	for _, to := range []netip.AddrPort{portal(port), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(ext))} {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("anyone?")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(within))
		if _, err := c.Read(make([]byte, 100)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to %s without endpoints: read %v, want connection refused (ICMP port unreachable)", to, err)
		}
	}

	mustUpdate(t, p, udpSvc("dns", port, startUDPBackend(t, "back")))
	if got, _ := exchange(t, udpClient(t), portal(port), "x"); got != "back:x" {
		t.Errorf("with an endpoint again: %q", got)
	}
}

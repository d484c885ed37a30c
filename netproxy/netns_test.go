package netproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// vethPair connects namespaces a and b with a veth pair, addresses the
// ends a /30, and returns the address of each end.
func vethPair(t *testing.T, a, b netns.NsHandle, nameA, nameB string, subnet string) (netip.Addr, netip.Addr) {
	t.Helper()
	p := netip.MustParsePrefix(subnet)
	addrA, addrB := p.Addr().Next(), p.Addr().Next().Next()
	testenv.MustInNS(t, a, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = nameA
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: nameB, PeerNamespace: netlink.NsFd(b)}); err != nil {
			return fmt.Errorf("add veth %s: %w", nameA, err)
		}
		return setAddrUp(nameA, addrA, p.Bits())
	})
	testenv.MustInNS(t, b, func() error { return setAddrUp(nameB, addrB, p.Bits()) })
	return addrA, addrB
}

func setAddrUp(name string, a netip.Addr, bits int) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}}); err != nil {
		return fmt.Errorf("address %s: %w", name, err)
	}
	return netlink.LinkSetUp(link)
}

func defaultRoute(gw netip.Addr) error {
	return netlink.RouteAdd(&netlink.Route{Gw: gw.AsSlice()})
}

// tcpRefused dials addr from ns and returns nil when the dial is refused
// (reset or ICMP) within one second.
func tcpRefused(ns netns.NsHandle, addr netip.AddrPort) error {
	return testenv.InNS(ns, func() error {
		start := time.Now()
		c, err := net.DialTimeout("tcp4", addr.String(), 3*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("dial %s: connected, want refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("dial %s: %v, want connection refused", addr, err)
		}
		if d := time.Since(start); d > time.Second {
			return fmt.Errorf("dial %s refused after %v, want within 1s", addr, d)
		}
		return nil
	})
}

// udpRefused sends a datagram from a connected socket in ns and returns
// nil when the ICMP port unreachable comes back as ECONNREFUSED on read.
func udpRefused(ns netns.NsHandle, addr netip.AddrPort) error {
	return udpCheck(ns, addr, false)
}

// udpBlocked is udpRefused, but also accepts the send itself failing with
// EPERM, which is how a datagram rejected in the node's own output path
// (by nftables) is refused to a local sender.
func udpBlocked(ns netns.NsHandle, addr netip.AddrPort) error {
	return udpCheck(ns, addr, true)
}

func udpCheck(ns netns.NsHandle, addr netip.AddrPort, sendMayFail bool) error {
	return testenv.InNS(ns, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("anyone?")); err != nil {
			if sendMayFail && errors.Is(err, syscall.EPERM) {
				return nil
			}
			return fmt.Errorf("send to %s: %w", addr, err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 100))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("UDP to %s: read %v, want port unreachable (connection refused)", addr, err)
		}
		return nil
	})
}

// udpReaches sends a datagram from ns and expects the answer want.
func udpReaches(ns netns.NsHandle, addr netip.AddrPort, want string) error {
	return testenv.InNS(ns, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello?")); err != nil {
			return fmt.Errorf("send to %s: %w", addr, err)
		}
		c.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			return fmt.Errorf("UDP to %s: read %q, %v; want %q", addr, buf[:n], err, want)
		}
		return nil
	})
}

// tcpReaches dials addr from ns and expects the greeting want.
func tcpReaches(ns netns.NsHandle, addr netip.AddrPort, want string) error {
	return testenv.InNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), 3*time.Second)
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(within))
		buf := make([]byte, len(want))
		if _, err := c.Read(buf); err != nil || string(buf) != want {
			return fmt.Errorf("dial %s: read %q, %v; want %q", addr, buf, err, want)
		}
		return nil
	})
}

// startGreeter greets with name alone (testenv.StartGreeter).
func startGreeter(t *testing.T, ns netns.NsHandle, addr netip.AddrPort, name string) *testenv.Greeter {
	t.Helper()
	return testenv.StartGreeter(t, ns, addr, func(netip.Addr) string { return name })
}

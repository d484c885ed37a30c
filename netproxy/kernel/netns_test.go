package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

// testNode is a node in a network namespace of its own with a bridge and
// three pods, each in a namespace of its own behind a veth on the bridge,
// the way podman's bridge network puts them behind the host:
//
//	node (kt-br 10.235.1.1, lo 127.0.0.1) ── client (10.235.1.2), a (10.235.1.3), b (10.235.1.4)
//
// The node runs netproxy.Node (link, local range route, guard) and the
// kernel data path in the table cuelet_test, as the agent would. Closing
// the namespaces at cleanup destroys all of it.
type testNode struct {
	node, client, a, b netns.NsHandle
	cidr               netip.Prefix
	cfg                Config
	guard              *netproxy.Node
}

var (
	nodeAddr   = netip.MustParseAddr("10.235.1.1")
	clientAddr = netip.MustParseAddr("10.235.1.2")
	backendA   = netip.MustParseAddr("10.235.1.3")
	backendB   = netip.MustParseAddr("10.235.1.4")
)

const (
	backendPort = 8080
	tableName   = "cuelet_test"
)

func newTestNode(t testing.TB, cidr string) *testNode {
	t.Helper()
	testenv.RequireRoot(t)
	tn := &testNode{node: testenv.NewNetNS(t), client: testenv.NewNetNS(t), a: testenv.NewNetNS(t), b: testenv.NewNetNS(t), cidr: netip.MustParsePrefix(cidr)}
	testenv.MustInNS(t, tn.node, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "kt-br"
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		if err := setAddrUp("kt-br", nodeAddr); err != nil {
			return err
		}
		// A podman host forwards (podman turns it on) and, like every
		// Kubernetes node, passes bridged IPv4 through netfilter, so that
		// a pod's reply to another pod of its bridge is un-DNATed.
		for file, v := range map[string]string{
			"/proc/sys/net/ipv4/ip_forward":                "1",
			"/proc/sys/net/bridge/bridge-nf-call-iptables": "1",
		} {
			if err := os.WriteFile(file, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	for i, pod := range []struct {
		ns   netns.NsHandle
		addr netip.Addr
	}{{tn.client, clientAddr}, {tn.a, backendA}, {tn.b, backendB}} {
		host, peer := fmt.Sprintf("kt-veth%d", i), fmt.Sprintf("kt-pod%d", i)
		testenv.MustInNS(t, tn.node, func() error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = host
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer, PeerNamespace: netlink.NsFd(pod.ns)}); err != nil {
				return fmt.Errorf("add veth: %w", err)
			}
			link, err := netlink.LinkByName(host)
			if err != nil {
				return err
			}
			br, err := netlink.LinkByName("kt-br")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetMaster(link, br); err != nil {
				return err
			}
			return netlink.LinkSetUp(link)
		})
		testenv.MustInNS(t, pod.ns, func() error {
			if err := setAddrUp(peer, pod.addr); err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{Gw: nodeAddr.AsSlice()})
		})
	}
	guard, err := netproxy.NewNode(netproxy.NodeConfig{CIDR: tn.cidr, LinkName: "kt0", TableName: tableName, NetNS: tn.node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { guard.Close() })
	tn.guard = guard
	tn.cfg = Config{PortalCIDR: tn.cidr, TableName: tableName, NetNS: tn.node}
	return tn
}

// portal is the i-th address of the range.
func (tn *testNode) portal(i int) netip.Addr {
	a := tn.cidr.Addr().As4()
	a[3] += byte(i)
	return netip.AddrFrom4(a)
}

// serve programs services the way the agent does: the guard with the
// portals, then the data path.
func (tn *testNode) serve(t testing.TB, p *Proxy, services ...netproxy.Service) {
	t.Helper()
	var portals []netproxy.Portal
	for _, s := range services {
		pt := netproxy.Portal{Addr: s.PortalIP}
		for _, port := range s.Ports {
			proto := port.Protocol
			if proto == "" {
				proto = "TCP"
			}
			pt.Ports = append(pt.Ports, netproxy.PortalPort{Protocol: proto, Port: uint16(port.Port)})
		}
		portals = append(portals, pt)
	}
	if err := tn.guard.Sync(portals); err != nil {
		t.Fatal(err)
	}
	if errs := p.Update(services); errs != nil {
		t.Fatal(errs)
	}
}

func (tn *testNode) newProxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := New(tn.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// nft runs the nft command in ns and returns its output.
func nft(t testing.TB, ns netns.NsHandle, args ...string) string {
	t.Helper()
	path := testenv.RequireCommand(t, "nft")
	var out []byte
	testenv.MustInNS(t, ns, func() error {
		var err error
		out, err = exec.Command(path, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %v: %v\n%s", args, err, out)
		}
		return nil
	})
	return string(out)
}

func setAddrUp(name string, a netip.Addr) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return fmt.Errorf("address %s on %s: %w", a, name, err)
	}
	return netlink.LinkSetUp(link)
}

// startGreeter answers "name from ip", the client's address as the
// backend sees it (testenv.StartGreeter).
func startGreeter(t testing.TB, ns netns.NsHandle, addr netip.AddrPort, name string) *testenv.Greeter {
	t.Helper()
	return testenv.StartGreeter(t, ns, addr, func(from netip.Addr) string { return name + " from " + from.String() })
}

// tcpGreeting connects from ns (from the address src, if valid) and
// returns the greeting.
func tcpGreeting(ns netns.NsHandle, src netip.Addr, addr netip.AddrPort) (string, error) {
	var got string
	err := testenv.InNS(ns, func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err := d.Dial("tcp4", addr.String())
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		got = string(buf[:n])
		return nil
	})
	return got, err
}

// udpGreeting sends a datagram from ns (from a fixed source port, if
// non-zero) and returns the answer.
func udpGreeting(ns netns.NsHandle, srcPort int, addr netip.AddrPort) (string, error) {
	var got string
	err := testenv.InNS(ns, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{Port: srcPort}, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello?")); err != nil {
			return fmt.Errorf("send to %s: %w", addr, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("UDP to %s: %w", addr, err)
		}
		got = string(buf[:n])
		return nil
	})
	return got, err
}

// tcpRefused dials addr from ns and returns nil when the dial is refused
// (reset or ICMP) within a second.
func tcpRefused(ns netns.NsHandle, addr netip.AddrPort) error {
	return testenv.InNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), 3*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("dial %s: connected, want refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("dial %s: %v, want connection refused", addr, err)
		}
		// ECONNREFUSED within the dial timeout is the reset: a dropped SYN
		// times out instead. No bound below that: under a loaded CI machine
		// the first SYN may be lost (1 s retransmit) and still be refused.
		return nil
	})
}

// udpRefused sends a datagram from ns and returns nil when ICMP port
// unreachable comes back (ECONNREFUSED on read).
func udpRefused(ns netns.NsHandle, addr netip.AddrPort) error {
	return testenv.InNS(ns, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("anyone?")); err != nil {
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

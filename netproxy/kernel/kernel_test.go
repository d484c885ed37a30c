package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cuelet/cuelet/netproxy"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

func twoBackends(t *testing.T, tn *testNode) {
	startGreeter(t, tn.a, netip.AddrPortFrom(backendA, backendPort), "a")
	startGreeter(t, tn.b, netip.AddrPortFrom(backendB, backendPort), "b")
}

func webService(portal netip.Addr, protocol string, eps ...netip.Addr) netproxy.Service {
	s := netproxy.Service{Name: "web", PortalIP: portal, Ports: []netproxy.Port{{Name: "http", Port: 80, Protocol: protocol}}}
	for _, e := range eps {
		s.Ports[0].Endpoints = append(s.Ports[0].Endpoints, netip.AddrPortFrom(e, backendPort))
	}
	return s
}

// backendOf is the backend's name in a greeting, "a from 10.235.1.2" → "a".
func backendOf(greeting string) string { b, _, _ := strings.Cut(greeting, " "); return b }

func TestKernelProxy_takes_endpoints_strictly_in_turn_from_the_host_and_from_pods(t *testing.T) {
	tn := newTestNode(t, "10.96.41.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA, backendB)
	tn.serve(t, p, web)
	portal := netip.AddrPortFrom(tn.portal(10), 80)
	for _, from := range []struct {
		name string
		ns   netns.NsHandle
	}{{"host", tn.node}, {"pod", tn.client}} {
		t.Run(from.name, func(t *testing.T) {
			var seq []string
			for i := range 8 {
				switch i {
				case 3:
					// The same services again change nothing.
					tn.serve(t, p, web)
				case 5:
					// Another service leaves this one's chain, and its
					// place in the turn, alone.
					other := webService(tn.portal(11), "TCP", backendA)
					other.Name = "other"
					tn.serve(t, p, web, other)
				}
				g, err := tcpGreeting(from.ns, netip.Addr{}, portal)
				if err != nil {
					t.Fatal(err)
				}
				seq = append(seq, backendOf(g))
			}
			for i := 1; i < len(seq); i++ {
				if seq[i] == seq[i-1] {
					t.Fatalf("backends in turn: %v, want strict alternation", seq)
				}
			}
		})
	}
}

func TestKernelProxy_keeps_a_client_on_its_endpoint_with_client_ip_affinity(t *testing.T) {
	tn := newTestNode(t, "10.96.45.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA, backendB)
	web.SessionAffinity = netproxy.AffinityClientIP
	tn.serve(t, p, web)
	portal := netip.AddrPortFrom(tn.portal(10), 80)
	for _, ns := range []netns.NsHandle{tn.client, tn.node} {
		first := ""
		for range 5 {
			g, err := tcpGreeting(ns, netip.Addr{}, portal)
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = backendOf(g)
			}
			if backendOf(g) != first {
				t.Fatalf("with ClientIP affinity a client went to %s after %s", backendOf(g), first)
			}
		}
	}
	// The endpoint leaving ends the stickiness: its clients go to the
	// others.
	tn.serve(t, p, webService(tn.portal(10), "TCP", backendB))
	for range 3 {
		g, err := tcpGreeting(tn.client, netip.Addr{}, portal)
		if err != nil || backendOf(g) != "b" {
			t.Fatalf("after a left: %q, %v; want b", g, err)
		}
	}
}

func TestKernelProxy_serves_udp_and_forgets_flows_to_an_endpoint_that_left(t *testing.T) {
	tn := newTestNode(t, "10.96.46.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	dns := webService(tn.portal(10), "UDP", backendA, backendB)
	tn.serve(t, p, dns)
	portal := netip.AddrPortFrom(tn.portal(10), 80)
	var seq []string
	for range 4 {
		g, err := udpGreeting(tn.client, 0, portal)
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, backendOf(g))
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("UDP flows in turn: %v, want strict alternation", seq)
		}
	}

	// A client with a fixed source port is one flow: it stays on its
	// endpoint until the endpoint leaves, and then moves at once, though
	// the old endpoint still answers.
	first, err := udpGreeting(tn.client, 40053, portal)
	if err != nil {
		t.Fatal(err)
	}
	again, err := udpGreeting(tn.client, 40053, portal)
	if err != nil || again != first {
		t.Fatalf("one flow answered by %q then %q (%v)", first, again, err)
	}
	stay := backendB
	if backendOf(first) == "b" {
		stay = backendA
	}
	tn.serve(t, p, webService(tn.portal(10), "UDP", stay))
	moved, err := udpGreeting(tn.client, 40053, portal)
	if err != nil || backendOf(moved) == backendOf(first) {
		t.Fatalf("after %s left, the flow is answered by %q (%v)", backendOf(first), moved, err)
	}
}

func TestKernelProxy_shows_backends_a_pod_s_own_address_and_masquerades_the_host(t *testing.T) {
	tn := newTestNode(t, "10.96.42.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	tn.serve(t, p, webService(tn.portal(10), "TCP", backendA))
	portal := netip.AddrPortFrom(tn.portal(10), 80)
	g, err := tcpGreeting(tn.client, netip.Addr{}, portal)
	if err != nil || g != "a from "+clientAddr.String() {
		t.Fatalf("from a pod: %q, %v; want the pod's own address", g, err)
	}
	g, err = tcpGreeting(tn.node, netip.Addr{}, portal)
	if err != nil || g != "a from 10.235.1.1" {
		t.Fatalf("from the host: %q, %v; want the host's address on the pods' link", g, err)
	}
	// Hairpin: the backend reaches its own service, masqueraded.
	g, err = tcpGreeting(tn.a, netip.Addr{}, portal)
	if err != nil || g != "a from 10.235.1.1" {
		t.Fatalf("hairpin: %q, %v; want the host's address", g, err)
	}
}

func TestKernelProxy_refuses_service_ports_without_endpoints_and_addresses_without_service(t *testing.T) {
	tn := newTestNode(t, "10.96.43.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	tcp := webService(tn.portal(10), "TCP")
	udp := webService(tn.portal(11), "UDP")
	udp.Name = "dns"
	tn.serve(t, p, tcp, udp)
	// Something on the node listens on every address at the service
	// ports: still refused.
	startGreeter(t, tn.node, netip.MustParseAddrPort("0.0.0.0:80"), "wild")
	for _, ns := range []netns.NsHandle{tn.node, tn.client} {
		for _, addr := range []netip.AddrPort{netip.AddrPortFrom(tn.portal(10), 80), netip.AddrPortFrom(tn.portal(99), 80)} {
			if err := tcpRefused(ns, addr); err != nil {
				t.Error(err)
			}
		}
		for _, addr := range []netip.AddrPort{netip.AddrPortFrom(tn.portal(11), 80), netip.AddrPortFrom(tn.portal(99), 80)} {
			if err := udpRefused(ns, addr); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestKernelProxy_serves_an_external_port_on_every_host_address_127_0_0_1_included(t *testing.T) {
	tn := newTestNode(t, "10.96.44.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA)
	web.Ports[0].ExternalPort = 30080
	tn.serve(t, p, web)
	for _, c := range []struct {
		name string
		ns   netns.NsHandle
		addr string
		want string
	}{
		{"host_to_localhost", tn.node, "127.0.0.1:30080", "a from " + nodeAddr.String()},
		{"host_to_its_address", tn.node, "10.235.1.1:30080", "a from " + nodeAddr.String()},
		{"pod_to_the_host_address", tn.client, "10.235.1.1:30080", "a from " + clientAddr.String()},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := tcpGreeting(c.ns, netip.Addr{}, netip.MustParseAddrPort(c.addr))
			if err != nil || g != c.want {
				t.Fatalf("%s: %q, %v; want %q", c.addr, g, err, c.want)
			}
		})
	}
	// The external port is not a port of the portal range.
	if err := tcpRefused(tn.client, netip.AddrPortFrom(tn.portal(10), 30080)); err != nil {
		t.Error(err)
	}
}

func TestKernelProxy_a_new_agent_adopts_the_rules_without_a_failed_connection(t *testing.T) {
	tn := newTestNode(t, "10.96.47.0/24")
	twoBackends(t, tn)
	first := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA, backendB)
	web.Ports[0].ExternalPort = 30080
	tn.serve(t, first, web)
	before := nft(t, tn.node, "-s", "list", "table", "ip", tableName)

	// Connections in a loop, from a pod to the portal and from the host
	// to 127.0.0.1, while the agent stops and starts twice.
	stop := make(chan struct{})
	done := make(chan error, 1)
	var n atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := tcpGreeting(tn.client, netip.Addr{}, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
				done <- err
				return
			}
			if _, err := tcpGreeting(tn.node, netip.Addr{}, netip.MustParseAddrPort("127.0.0.1:30080")); err != nil {
				done <- err
				return
			}
			n.Add(2)
		}
	}()
	wait := func(k int64) {
		for start := n.Load(); n.Load() < start+k; {
			select {
			case err := <-done:
				t.Fatalf("a connection failed: %v", err)
			default:
				runtime.Gosched()
			}
		}
	}
	wait(10)
	first.Close() // the agent stops; the rules stay
	wait(10)
	second := tn.newProxy(t)
	tn.serve(t, second, web) // adopts: one transaction over the old rules
	wait(10)
	third := tn.newProxy(t)
	other := webService(tn.portal(11), "TCP", backendB)
	other.Name = "other"
	tn.serve(t, third, web, other) // a changed set at adoption
	wait(10)
	fourth := tn.newProxy(t)
	tn.serve(t, fourth, web) // and back
	wait(10)
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("a connection failed: %v", err)
	}
	if after := nft(t, tn.node, "-s", "list", "table", "ip", tableName); after != before {
		t.Fatalf("after adoption the table differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestKernelProxy_counts_connections_per_service_port_across_updates_and_agents(t *testing.T) {
	tn := newTestNode(t, "10.96.48.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA, backendB)
	dns := webService(tn.portal(11), "UDP", backendA)
	dns.Name = "dns"
	tn.serve(t, p, web, dns)
	for range 3 {
		if _, err := tcpGreeting(tn.client, netip.Addr{}, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
			t.Fatal(err)
		}
	}
	tn.serve(t, p, webService(tn.portal(10), "TCP", backendB), dns) // endpoints change, the count stays
	if _, err := udpGreeting(tn.client, 0, netip.AddrPortFrom(tn.portal(11), 80)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	again := tn.newProxy(t)
	tn.serve(t, again, web, dns)
	if _, err := tcpGreeting(tn.node, netip.Addr{}, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
		t.Fatal(err)
	}
	counters, err := again.Counters()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counters {
		got[c.Service+"/"+c.Port+"/"+c.Protocol] = c.Connections
	}
	want := map[string]uint64{"web/http/TCP": 4, "dns/http/UDP": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("counters = %v, want %v", got, want)
	}

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(&collector{p: again}); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cuelet_proxy_connections_total Connections (TCP) and flows (UDP) to each service port, counted by nftables in the kernel data path.
# TYPE cuelet_proxy_connections_total counter
cuelet_proxy_connections_total{port="http",service="dns"} 1
cuelet_proxy_connections_total{port="http",service="web"} 4
`)); err != nil {
		t.Fatal(err)
	}
}

func TestRemove_leaves_the_guard_and_nothing_of_the_kernel_data_path(t *testing.T) {
	tn := newTestNode(t, "10.96.49.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA, backendB)
	web.SessionAffinity = netproxy.AffinityClientIP
	web.Ports[0].ExternalPort = 30080
	tn.serve(t, p, web)
	if _, err := tcpGreeting(tn.a, netip.Addr{}, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
		t.Fatal(err) // hairpin: turns hairpin mode on
	}
	if _, err := tcpGreeting(tn.node, netip.Addr{}, netip.MustParseAddrPort("127.0.0.1:30080")); err != nil {
		t.Fatal(err) // turns route_localnet on
	}
	if got := tweaksOf(t, tn); got != "route_localnet=1 hairpin=3" {
		t.Fatalf("while serving: %s", got)
	}
	p.Close()

	// The switch to the userspace mode, from another process.
	if err := Remove(tn.cfg); err != nil {
		t.Fatal(err)
	}
	if err := Remove(tn.cfg); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	ruleset := nft(t, tn.node, "list", "ruleset")
	for _, word := range []string{"svc", "ep-", "aff-", "dnat", "masquerade", "numgen"} {
		if strings.Contains(ruleset, word) {
			t.Fatalf("after Remove the ruleset still has %q:\n%s", word, ruleset)
		}
	}
	if !strings.Contains(ruleset, "portal_ports") || !strings.Contains(ruleset, "chain input") {
		t.Fatalf("Remove took the guard too:\n%s", ruleset)
	}
	if got := tweaksOf(t, tn); got != "route_localnet=0 hairpin=0" {
		t.Fatalf("after Remove: %s", got)
	}
	// The portal is refused now, as any address of the range.
	if err := tcpRefused(tn.client, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
		t.Fatal(err)
	}
	// And the node's own cleanup leaves an empty ruleset.
	if err := tn.guard.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if ruleset := strings.TrimSpace(nft(t, tn.node, "list", "ruleset")); ruleset != "" {
		t.Fatalf("after the node's cleanup:\n%s", ruleset)
	}
}

// tweaksOf reports route_localnet of the bridge and how many of its ports
// are in hairpin mode.
func tweaksOf(t *testing.T, tn *testNode) string {
	t.Helper()
	var localnet string
	hairpin := 0
	testenv.MustInNS(t, tn.node, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/kt-br/route_localnet")
		if err != nil {
			return err
		}
		localnet = strings.TrimSpace(string(b))
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == 0 {
				continue
			}
			info, err := netlink.LinkGetProtinfo(l)
			if err != nil {
				return err
			}
			if info.Hairpin {
				hairpin++
			}
		}
		return nil
	})
	return fmt.Sprintf("route_localnet=%s hairpin=%d", localnet, hairpin)
}

func TestKernelProxy_leaves_an_established_tcp_connection_to_an_endpoint_that_left(t *testing.T) {
	tn := newTestNode(t, "10.96.50.0/24")
	var ln net.Listener
	testenv.MustInNS(t, tn.a, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(backendA, backendPort).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }() // echo
		}
	}()
	p := tn.newProxy(t)
	tn.serve(t, p, webService(tn.portal(10), "TCP", backendA))
	var c net.Conn
	testenv.MustInNS(t, tn.client, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(tn.portal(10), 80).String(), 3*time.Second)
		return err
	})
	defer c.Close()
	echo := func(msg string) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			return fmt.Errorf("echo %q: got %q, %v", msg, buf, err)
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	// The endpoint leaves (not ready): no new connections, the open one
	// goes on.
	tn.serve(t, p, webService(tn.portal(10), "TCP"))
	if err := echo("after"); err != nil {
		t.Fatalf("the established connection broke when its endpoint left: %v", err)
	}
	if err := tcpRefused(tn.client, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
		t.Fatal(err)
	}
}

func TestKernelProxy_answers_closed_after_run_and_leaves_the_rules(t *testing.T) {
	tn := newTestNode(t, "10.96.51.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA)
	tn.serve(t, p, web)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if errs := p.Update([]netproxy.Service{web}); !errors.Is(errs["web"], netproxy.ErrClosed) {
		t.Fatalf("Update after Run = %v, want ErrClosed", errs)
	}
	if _, err := tcpGreeting(tn.client, netip.Addr{}, netip.AddrPortFrom(tn.portal(10), 80)); err != nil {
		t.Fatalf("the portal stopped with the agent: %v", err)
	}
}

func TestKernelProxy_turns_hairpin_on_for_a_new_bridge_port_though_no_rule_changes(t *testing.T) {
	tn := newTestNode(t, "10.96.52.0/24")
	twoBackends(t, tn)
	p := tn.newProxy(t)
	web := webService(tn.portal(10), "TCP", backendA)
	tn.serve(t, p, web)
	// Pod a is recreated with its old address: a new bridge port, with
	// hairpin mode off.
	testenv.MustInNS(t, tn.node, func() error {
		l, err := netlink.LinkByName("kt-veth1")
		if err != nil {
			return err
		}
		return netlink.LinkSetHairpin(l, false)
	})
	tn.serve(t, p, web)
	g, err := tcpGreeting(tn.a, netip.Addr{}, netip.AddrPortFrom(tn.portal(10), 80))
	if err != nil || backendOf(g) != "a" {
		t.Fatalf("hairpin after the port changed: %q, %v", g, err)
	}
}

// Fixed endpoints on the host itself (127.0.0.1, or an address of the
// host) are reached through lo: their external ports need no
// route_localnet anywhere, and above all not on the interface of the
// default route, which the main table would name for 127.0.0.1
// (CVE-2020-8558's exposure of localhost services to the network).
func TestKernelProxy_turns_no_route_localnet_on_for_endpoints_on_the_host_itself(t *testing.T) {
	tn := newTestNode(t, "10.96.45.0/24")
	testenv.MustInNS(t, tn.node, func() error {
		// The uplink: a default route through the bridge.
		return netlink.RouteAdd(&netlink.Route{Gw: clientAddr.AsSlice()})
	})
	p := tn.newProxy(t)
	local := webService(tn.portal(10), "TCP", netip.MustParseAddr("127.0.0.1"), nodeAddr)
	local.Ports[0].ExternalPort = 30081
	tn.serve(t, p, local)
	if got := tweaksOf(t, tn); got != "route_localnet=0 hairpin=0" {
		t.Fatalf("after fixed endpoints on the host: %s, want route_localnet=0 hairpin=0", got)
	}
}

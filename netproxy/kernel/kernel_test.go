package kernel

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/cuelet/cuelet/netproxy"
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
	tn.serve(t, p, webService(tn.portal(10), "TCP", backendA, backendB))
	portal := netip.AddrPortFrom(tn.portal(10), 80)
	for _, from := range []struct {
		name string
		ns   netns.NsHandle
	}{{"host", tn.node}, {"pod", tn.client}} {
		t.Run(from.name, func(t *testing.T) {
			var seq []string
			for range 6 {
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

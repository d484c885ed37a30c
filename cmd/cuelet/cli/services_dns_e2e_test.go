package cli_test

// End-to-end tests of service names in DNS (SPEC §10) from the host: the
// agent in-process with a portal range of the test's own (its tenth
// address is the DNS server), services with fixed endpoints (no podman
// needed), and an upstream resolver the test runs on 127.0.53.<slot>:53,
// named by a resolv.conf of the test's own. No query leaves the node.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// dnsUpstream runs a resolver on 127.0.53.<slot>:53 (UDP and TCP) that
// answers outside.test. with 192.0.2.9 and everything else with NXDOMAIN,
// and returns a resolv.conf naming it.
func (n *svcNode) dnsUpstream() string {
	n.t.Helper()
	addr := fmt.Sprintf("127.0.53.%d:53", n.slot)
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "outside.test." && r.Question[0].Qtype == mdns.TypeA {
			a, _ := mdns.NewRR("outside.test. 60 IN A 192.0.2.9")
			m.Answer = append(m.Answer, a)
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		n.t.Fatal(err)
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		pc.Close()
		n.t.Fatal(err)
	}
	udp, tcp := &mdns.Server{PacketConn: pc, Handler: h}, &mdns.Server{Listener: l, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	n.t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	conf := filepath.Join(n.stateDir, "resolv.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "nameserver 127.0.53.%d\n", n.slot), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return conf
}

// lookup asks the node's DNS server (the tenth address of its range).
func (n *svcNode) lookup(network, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, netip.AddrPortFrom(n.addr(10), 53).String())
	return r, err
}

func answers(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.SRV:
			out = append(out, fmt.Sprintf("%d %s", rr.Port, rr.Target))
		}
	}
	return out
}

func TestServicesDNSFromTheHost(t *testing.T) {
	n := newSvcNode(t, false)
	conf := n.dnsUpstream()
	n.write("web.cue", `
services: web: {
	endpoints: ["127.0.0.1:9"]
	ports: [{name: "http", port: 8080}]
}
`)
	n.startAgent("--dns-resolv-conf", conf)
	web := n.portalOf("web")
	if web == n.addr(10) {
		t.Fatalf("web got the DNS server's address %s", web)
	}

	for _, network := range []string{"udp", "tcp"} {
		for _, c := range []struct {
			name  string
			qtype uint16
			rcode int
			want  []string
		}{
			{"web.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{web.String()}},
			{"web.", mdns.TypeA, mdns.RcodeSuccess, []string{web.String()}},
			{"_http._tcp.web.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"8080 web.svc.cluster.local."}},
			{"web.svc.cluster.local.", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
			{"nope.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
			{"outside.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"192.0.2.9"}}, // forwarded
			{"missing.test.", mdns.TypeA, mdns.RcodeNameError, nil},                 // forwarded
		} {
			r, err := n.lookup(network, c.name, c.qtype)
			if err != nil {
				t.Errorf("%s %s over %s: %v", mdns.TypeToString[c.qtype], c.name, network, err)
				continue
			}
			if r.Rcode != c.rcode || !slices.Equal(answers(r), c.want) {
				t.Errorf("%s %s over %s: %s %q, want %s %q", mdns.TypeToString[c.qtype], c.name, network,
					mdns.RcodeToString[r.Rcode], answers(r), mdns.RcodeToString[c.rcode], c.want)
			}
		}
	}

	// A service added while the agent runs is answered within 3 s.
	n.write("late.cue", `
services: late: {
	endpoints: ["127.0.0.1:9"]
	ports: [{port: 80}]
}
`)
	start := time.Now()
	svcEventually(t, 3*time.Second, func() error {
		r, err := n.lookup("udp", "late.svc.cluster.local.", mdns.TypeA)
		if err != nil {
			return err
		}
		if len(r.Answer) != 1 {
			return fmt.Errorf("late: %s %q", mdns.RcodeToString[r.Rcode], answers(r))
		}
		return nil
	})
	t.Logf("a new service was answered %s after its file was written", time.Since(start).Round(time.Millisecond))

	// --dns-address=none: nothing answers on the address, and a portal
	// may take it.
	n.stopAgent()
	n.write("fixed.cue", fmt.Sprintf(`
services: fixed: {
	endpoints: ["127.0.0.1:9"]
	portalIP: %q
	ports: [{port: 80}]
}
`, n.addr(10)))
	n.startAgent("--dns-address=none")
	if got := n.portalOf("fixed"); got != n.addr(10) {
		t.Errorf("with --dns-address=none, fixed got %s, want %s", got, n.addr(10))
	}
	if _, err := n.lookup("udp", "web.svc.cluster.local.", mdns.TypeA); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("with --dns-address=none, a query to %s got %v, want it refused (ICMP port unreachable)", n.addr(10), err)
	}
}

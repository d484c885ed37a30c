package cli_test

// End-to-end tests of service names in DNS (SPEC §10) from the host: the
// agent in-process with a portal range of the test's own (its tenth
// address is the DNS server), services with fixed endpoints (no podman
// needed), and an upstream resolver the test runs on 127.0.53.<slot>:53,
// named by a resolv.conf of the test's own. No query leaves the node.

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
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

func TestServicesDNSFromTheHost(t *testing.T) { eachProxyMode(t, testServicesDNSFromTheHost) }

func testServicesDNSFromTheHost(t *testing.T, mode agent.ProxyMode) {
	n := newSvcNode(t, mode, false)
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
	testenv.Eventually(t, 3*time.Second, func() error {
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

// TestServicesDNSFromInsideAPod checks SPEC §10 where it matters: a pod
// resolves services by their short and full names and SRV through the
// node's server, reaches one by name, gets NXDOMAIN for an unknown one,
// has other names forwarded, and finds a service added while it runs
// without being recreated.
func TestServicesDNSFromInsideAPod(t *testing.T) { eachProxyMode(t, testServicesDNSFromInsideAPod) }

func testServicesDNSFromInsideAPod(t *testing.T, mode agent.ProxyMode) {
	n := newSvcNode(t, mode, true)
	conf := n.dnsUpstream()
	n.write("pods.cue", fmt.Sprintf(`
pods: web: {
	labels: app: "web"
	containers: httpd: {
		image: %[1]q
		command: ["sh", "-c", "echo hello from $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
		ports: [{name: "http", containerPort: 8080}]
		readinessProbe: {httpGet: {path: "/", port: "http"}, periodSeconds: 1}
	}
}
pods: client: {
	containers: sh: {
		image: %[1]q
		command: ["sleep", "1000000"]
	}
	dnsConfig: options: [{name: "ndots", value: "1"}]
}
services: web: {
	selector: app: "web"
	ports: [{name: "http", port: 80, targetPort: "http"}]
}
`, podmantest.Image))
	n.startAgent("--dns-resolv-conf", conf)
	n.waitService("web", 2*time.Minute, endpointCount(1))
	web := n.portalOf("web").String()
	dnsAddr := n.addr(10).String()

	resolv := n.mustExec("client-sh", "cat /etc/resolv.conf")
	for _, want := range []string{"nameserver " + dnsAddr, "search svc.cluster.local", "options ndots:1"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	if strings.Count(resolv, "nameserver") != 1 {
		t.Errorf("resolv.conf has other nameservers than the node's:\n%s", resolv)
	}

	for _, c := range []struct{ script, want string }{
		{"nslookup web.svc.cluster.local " + dnsAddr, "Address: " + web},
		{"nslookup web " + dnsAddr, "Address: " + web},
		{"nslookup -type=srv _http._tcp.web.svc.cluster.local " + dnsAddr, "service = 0 100 80 web.svc.cluster.local"},
		{"nslookup nope.svc.cluster.local " + dnsAddr + "; true", "NXDOMAIN"},
		{"nslookup outside.test " + dnsAddr, "Address: 192.0.2.9"},
		// busybox wget resolves with the libc resolver (resolv.conf,
		// search list); its own -T crashes, so timeout bounds it.
		{"timeout 10 wget -q -O - http://web/", "hello from web"},
		{"timeout 10 wget -q -O - http://web.svc.cluster.local/", "hello from web"},
	} {
		if out, _ := n.exec("client-sh", c.script); !strings.Contains(out, c.want) {
			t.Errorf("%s: want %q in\n%s", c.script, c.want, out)
		}
	}

	before := n.containerIDs()
	n.write("late.cue", `
services: late: {
	endpoints: ["127.0.0.1:9"]
	ports: [{port: 80}]
}
`)
	start := time.Now()
	testenv.Eventually(t, 3*time.Second, func() error {
		out, err := n.exec("client-sh", "nslookup late "+dnsAddr)
		if err != nil || !strings.Contains(out, "Name:") {
			return fmt.Errorf("late not resolved (%v):\n%s", err, out)
		}
		return nil
	})
	if late := n.portalOf("late").String(); !strings.Contains(n.mustExec("client-sh", "nslookup late "+dnsAddr), "Address: "+late) {
		t.Errorf("late does not resolve to its portal %s", late)
	}
	t.Logf("a service added while the pod ran resolved inside it after %s", time.Since(start).Round(time.Millisecond))
	if after := n.containerIDs(); !maps.Equal(before, after) {
		t.Errorf("adding a service recreated containers: before %v, after %v", before, after)
	}
}

package cli_test

// End-to-end tests of services (SPEC §3.9-3.12, issue 4): `cuelet plan`,
// `apply` and `run` in-process against a real podman (podmantest), with
// real portal addresses, routes and nftables rules on the host (a range,
// link and table of each test's own, see services_node_test.go), and
// traffic only to 127.0.0.1, to the portal range and to the test's pods.
// They need root and podman; without them they skip, unless CI is set.
//
// Pods reach portals the way they reach anything off their subnet: by
// their default route, the podman bridge. Portals are ordinary local
// addresses of the node (not 127/8), so neither route_localnet nor hairpin
// mode on the bridge is needed; these tests run with both off.

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// The pods of TestServices_get_portals_and_environment_and_a_restarted_agent_keeps_them:
// web serves "hello from <replica>" over HTTP, and at /cgi-bin/ip the
// address the request came from; dns answers UDP with "<replica>: <what it
// got>", client only runs commands. Services are in another unit.
const servicePods = `
pods: web: {
	replicas: 2
	labels: app: "web"
	containers: httpd: {
		image: %[1]q
		command: ["sh", "-c", "mkdir -p /www/cgi-bin && echo hello from $HOSTNAME > /www/index.html && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"]
		env: LEGACY_SERVICE_HOST: "set by the container"
		ports: [{name: "http", containerPort: 8080}]
		readinessProbe: {httpGet: {path: "/", port: "http"}, periodSeconds: 1}
	}
}
pods: dns: {
	replicas: 2
	labels: app: "dns"
	containers: server: {
		image: %[1]q
		command: ["/opt/bin/udpecho", "serve", ":5353"]
		ports: [{name: "dns", containerPort: 5353, protocol: "UDP"}]
		volumeMounts: [{name: "bin", mountPath: "/opt/bin", readOnly: true}]
	}
	volumes: bin: hostPath: path: %[2]q
}
pods: client: {
	labels: app: "client"
	containers: sh: {
		image: %[1]q
		command: ["sleep", "1000000"]
		volumeMounts: [{name: "bin", mountPath: "/opt/bin", readOnly: true}]
	}
	volumes: bin: hostPath: path: %[2]q
}
`

const serviceDefs = `
services: web: {
	selector: app: "web"
	ports: [{name: "http", port: 80, targetPort: "http", externalPort: %[1]d}]
}
services: dns: {
	selector: app: "dns"
	ports: [{name: "dns", port: 53, protocol: "UDP", targetPort: "dns"}]
}
// No pod has app: redis: a service without endpoints.
services: "redis-primary": {
	selector: app: "redis"
	portalIP: %[2]q
	ports: [{name: "redis", port: 6379}]
}
services: legacy: {
	endpoints: ["127.0.0.1:5432"]
	ports: [{name: "postgres", port: 5432}]
}
`

func TestServices_get_portals_and_environment_and_a_restarted_agent_keeps_them(t *testing.T) {
	eachProxyMode(t, testServices_get_portals_and_environment_and_a_restarted_agent_keeps_them)
}

func testServices_get_portals_and_environment_and_a_restarted_agent_keeps_them(t *testing.T, mode agent.ProxyMode) {
	n := newSvcNode(t, mode, true)
	bin := n.buildUDPEcho()
	webExternal := testenv.FreeTCPPort(t)
	redisIP := n.addr(11)
	n.write("pods.cue", fmt.Sprintf(servicePods, podmantest.Image, bin))
	n.write("services.cue", fmt.Sprintf(serviceDefs, webExternal, redisIP))

	// plan lists the services with their portals and exits 2; apply makes
	// it so; plan is then empty and exits 0.
	out, errOut, code := n.cuelet("plan")
	if code != 2 {
		t.Fatalf("plan exited %d, want 2\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	planned := map[string]netip.Addr{}
	re := regexp.MustCompile(`^\+ service (\S+) ([0-9.]+):`)
	for _, l := range lines(out) {
		if m := re.FindStringSubmatch(l); m != nil {
			planned[m[1]] = netip.MustParseAddr(m[2])
		}
	}
	for _, want := range []string{
		"+ pod web", "+ pod web-1", "+ pod dns", "+ pod dns-1", "+ pod client",
		fmt.Sprintf("+ service web %s:80 (external %d)", planned["web"], webExternal),
		fmt.Sprintf("+ service dns %s:53/udp", planned["dns"]),
		fmt.Sprintf("+ service redis-primary %s:6379", redisIP),
		fmt.Sprintf("+ service legacy %s:5432", planned["legacy"]),
	} {
		if !slices.Contains(lines(out), want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	for name, ip := range planned {
		if !n.cidr.Contains(ip) {
			t.Errorf("planned portal %s of %s is outside %s", ip, name, n.cidr)
		}
	}
	if out, errOut, code := n.cuelet("apply"); code != 0 {
		t.Fatalf("apply exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if out, errOut, code := n.cuelet("plan"); code != 0 || out != "" {
		t.Fatalf("plan after apply exited %d, want 0 and no output\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	n.startAgent()
	n.waitService("web", time.Minute, endpointCount(2))
	n.waitService("dns", time.Minute, endpointCount(2))
	portals := map[string]netip.Addr{}
	for _, s := range []string{"web", "dns", "redis-primary", "legacy"} {
		portals[s] = n.portalOf(s)
		if portals[s] != planned[s] {
			t.Errorf("service %s: portal %s, plan said %s", s, portals[s], planned[s])
		}
	}
	web := netip.AddrPortFrom(portals["web"], 80)
	external := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(webExternal))
	dns := netip.AddrPortFrom(portals["dns"], 53)

	t.Log("a client pod reaches both replicas through the portal")
	got := counts(lines(n.mustExec("client-sh", fmt.Sprintf(
		"for i in $(seq 20); do timeout 5 wget -qO- http://%s/ || echo FAILED; done", web))))
	if got["hello from web"]+got["hello from web-1"] != 20 || got["hello from web"] < 5 || got["hello from web-1"] < 5 {
		t.Errorf("20 requests from a pod to %s, want both replicas round robin: %v", web, got)
	}

	t.Log("a backend sees the client pod's own address in nftables mode")
	clientIP := n.podIP("client")
	// busybox httpd listens on [::] and writes a v4-mapped address in brackets.
	seenFrom := n.mustExec("client-sh", fmt.Sprintf("timeout 5 wget -qO- http://%s/cgi-bin/ip", web))
	if a, err := netip.ParseAddr(strings.Trim(seenFrom, "[]")); err == nil {
		seenFrom = a.Unmap().String()
	}
	switch n.mode {
	case agent.ProxyNftables:
		if seenFrom != clientIP {
			t.Errorf("a request from the client pod (%s) reached web from %q, want the pod's own address", clientIP, seenFrom)
		}
	default:
		t.Logf("%s mode: a request from the client pod (%s) reached web from %s", n.mode, clientIP, seenFrom)
	}

	t.Log("the host reaches the portal and the external port on 127.0.0.1; sequential connections alternate strictly")
	for _, target := range []netip.AddrPort{web, external} {
		var order []string
		for range 6 {
			body, err := hostGet(target, "/")
			if err != nil {
				t.Fatalf("from the host: %v", err)
			}
			order = append(order, strings.TrimPrefix(body, "hello from "))
		}
		for i := 1; i < len(order); i++ {
			if order[i] == order[i-1] || !strings.HasPrefix(order[i], "web") {
				t.Errorf("6 sequential requests from the host to %s went to %v, want web and web-1 strictly in turn", target, order)
				break
			}
		}
	}

	t.Log("a UDP service answers through its portal, from the host and from a pod")
	seen := map[string]bool{}
	for i := range 4 {
		answer, err := udpAsk(dns, fmt.Sprintf("q%d", i))
		if err != nil {
			t.Fatalf("UDP to %s: %v", dns, err)
		}
		replica, msg, _ := strings.Cut(answer, ": ")
		if msg != fmt.Sprintf("q%d", i) {
			t.Errorf("UDP to %s: answer %q", dns, answer)
		}
		seen[replica] = true
	}
	if !seen["dns"] || !seen["dns-1"] {
		t.Errorf("UDP sessions from 4 sockets went to %v, want both replicas", seen)
	}
	if out := n.mustExec("client-sh", fmt.Sprintf("/opt/bin/udpecho send %s from-a-pod", dns)); !regexp.MustCompile(`^dns(-1)?: from-a-pod$`).MatchString(out) {
		t.Errorf("UDP from a pod to %s: %q", dns, out)
	}

	t.Log("hairpin: a replica reaches its own service")
	got = counts(lines(n.mustExec("web-httpd", fmt.Sprintf(
		"for i in 1 2 3 4; do timeout 5 wget -qO- http://%s/ || echo FAILED; done", web))))
	if got["hello from web"] == 0 || got["FAILED"] > 0 {
		t.Errorf("web to its own service %s: %v, want answers from itself too", web, got)
	}

	t.Log("the rest of the range is refused at once")
	unused := n.addr(250)
	for _, target := range []netip.AddrPort{
		netip.AddrPortFrom(unused, 80),                  // no service at that address
		netip.AddrPortFrom(portals["web"], 81),          // a portal, but not its port
		netip.AddrPortFrom(unused, uint16(webExternal)), // the number of a wildcard external port
		netip.AddrPortFrom(redisIP, 6379),               // a service without endpoints
	} {
		if err := tcpRefused(target); err != nil {
			t.Error(err)
		}
	}
	for _, target := range []netip.AddrPort{netip.AddrPortFrom(unused, 5399), netip.AddrPortFrom(portals["dns"], 5399)} {
		if err := udpRefused(target); err != nil {
			t.Error(err)
		}
	}
	// From a pod: busybox nc says "Connection refused" when the handshake
	// is reset; when the proxy resets an accepted connection (no
	// endpoints) it just ends. `timeout 1` exits 143 when nc is still
	// waiting after a second.
	if out, _ := n.exec("client-sh", fmt.Sprintf("timeout 1 nc %s 80 </dev/null; echo exit=$?", unused)); !strings.Contains(out, "refused") || strings.HasSuffix(out, "exit=143") {
		t.Errorf("from a pod, %s:80: %q, want refused within 1s", unused, out)
	}
	if out, _ := n.exec("client-sh", fmt.Sprintf("timeout 1 nc %s 6379 </dev/null; echo exit=$?", redisIP)); strings.HasSuffix(out, "exit=143") {
		t.Errorf("from a pod, the service without endpoints %s:6379: %q, want refused within 1s", redisIP, out)
	}

	t.Log("a program listening on every host address does not answer for the range")
	tcpAny, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpAny.Close()
	go func() {
		for {
			c, err := tcpAny.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host program\n"))
			c.Close()
		}
	}()
	udpAny, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udpAny.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := udpAny.ReadFrom(buf)
			if err != nil {
				return
			}
			udpAny.WriteTo([]byte("host program"), from)
		}
	}()
	tcpPort := uint16(tcpAny.Addr().(*net.TCPAddr).Port)
	udpPort := uint16(udpAny.LocalAddr().(*net.UDPAddr).Port)
	for _, a := range []netip.Addr{unused, portals["web"]} {
		if err := tcpRefused(netip.AddrPortFrom(a, tcpPort)); err != nil {
			t.Error(err)
		}
		if err := udpRefused(netip.AddrPortFrom(a, udpPort)); err != nil {
			t.Error(err)
		}
	}

	t.Log("every container has the variables of every service, and the env file")
	redis := fmt.Sprintf(`REDIS_PRIMARY_SERVICE_HOST=%[1]s
REDIS_PRIMARY_SERVICE_PORT=6379
REDIS_PRIMARY_SERVICE_PORT_REDIS=6379
REDIS_PRIMARY_PORT=tcp://%[1]s:6379
REDIS_PRIMARY_PORT_6379_TCP=tcp://%[1]s:6379
REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp
REDIS_PRIMARY_PORT_6379_TCP_PORT=6379
REDIS_PRIMARY_PORT_6379_TCP_ADDR=%[1]s`, redisIP)
	udp := fmt.Sprintf(`DNS_SERVICE_HOST=%[1]s
DNS_SERVICE_PORT=53
DNS_SERVICE_PORT_DNS=53
DNS_PORT=udp://%[1]s:53
DNS_PORT_53_UDP=udp://%[1]s:53
DNS_PORT_53_UDP_PROTO=udp
DNS_PORT_53_UDP_PORT=53
DNS_PORT_53_UDP_ADDR=%[1]s`, portals["dns"])
	others := fmt.Sprintf("WEB_SERVICE_HOST=%s\nWEB_SERVICE_PORT_HTTP=80\nLEGACY_SERVICE_PORT_POSTGRES=5432", portals["web"])
	wantEnv := lines(redis + "\n" + udp + "\n" + others)
	environ := n.mustExec("web-httpd", "env")
	if m := missingLines(environ, wantEnv...); len(m) > 0 {
		t.Errorf("environment of web-httpd lacks %q:\n%s", m, environ)
	}
	if m := missingLines(environ, "LEGACY_SERVICE_HOST=set by the container"); len(m) > 0 {
		t.Errorf("the container's own env does not win over the service variable:\n%s", environ)
	}
	replicas := []string{"web", "web-1", "dns", "dns-1", "client"}
	containers := []string{"web-httpd", "web-1-httpd", "dns-server", "dns-1-server", "client-sh"}
	file := n.envFile("web")
	if m := missingLines(file, append(wantEnv, "LEGACY_SERVICE_HOST="+portals["legacy"].String())...); len(m) > 0 {
		t.Errorf("services.env lacks %q:\n%s", m, file)
	}
	if sorted := slices.Sorted(slices.Values(lines(file))); !slices.Equal(sorted, lines(file)) || len(sorted) != 4*8 {
		t.Errorf("services.env: want 32 sorted lines (4 services with one named port each), got %d:\n%s", len(sorted), file)
	}
	for i, r := range replicas {
		if got := n.envFile(r); got != file {
			t.Errorf("services.env of %s differs from web's:\n%s", r, got)
		}
		if got := n.mustExec(containers[i], "cat /run/cuelet/services.env"); got != strings.TrimSpace(file) {
			t.Errorf("/run/cuelet/services.env in %s:\n%s\nwant\n%s", containers[i], got, file)
		}
	}

	t.Log("a new service reaches every env file without recreating a pod")
	ids := n.containerIDs()
	n.write("added.cue", `services: added: {selector: app: "web", ports: [{port: 8081, targetPort: "http"}]}`)
	added := n.portalOf("added")
	for i, r := range replicas {
		want := fmt.Sprintf("ADDED_SERVICE_HOST=%s", added)
		testenv.Eventually(t, 10*time.Second, func() error {
			if m := missingLines(n.envFile(r), want, "ADDED_SERVICE_PORT=8081"); len(m) > 0 {
				return fmt.Errorf("services.env of %s lacks %q", r, m)
			}
			return nil
		})
		if m := missingLines(n.mustExec(containers[i], "cat /run/cuelet/services.env"), want); len(m) > 0 {
			t.Errorf("/run/cuelet/services.env in %s lacks %q", containers[i], m)
		}
	}
	n.waitService("added", 30*time.Second, endpointCount(2))
	if body, err := hostGet(netip.AddrPortFrom(added, 8081), "/"); err != nil || !strings.HasPrefix(body, "hello from web") {
		t.Errorf("new service: %q, %v", body, err)
	}

	t.Log("editing a service keeps its portal")
	addedExternal := testenv.FreeTCPPort(t)
	n.write("added.cue", fmt.Sprintf(`services: added: {selector: app: "web", ports: [{port: 8082, targetPort: "http", externalPort: %d}]}`, addedExternal))
	testenv.Eventually(t, 10*time.Second, func() error {
		if m := missingLines(n.envFile("client"), "ADDED_SERVICE_PORT=8082"); len(m) > 0 {
			return fmt.Errorf("services.env lacks %q", m)
		}
		return nil
	})
	if got := n.portalOf("added"); got != added {
		t.Errorf("edited service moved from %s to %s", added, got)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := hostGet(netip.AddrPortFrom(added, 8082), "/")
		return err
	})
	if err := tcpRefused(netip.AddrPortFrom(added, 8081)); err != nil {
		t.Errorf("old port of the edited service: %v", err)
	}
	if body, err := hostGet(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(addedExternal)), "/"); err != nil || !strings.HasPrefix(body, "hello from web") {
		t.Errorf("new external port: %q, %v", body, err)
	}
	if after := n.containerIDs(); !maps.Equal(ids, after) {
		t.Errorf("service changes recreated containers:\nbefore %v\nafter  %v", ids, after)
	}

	t.Log("a restarted agent keeps every portal and every container")
	portals["added"] = added
	n.stopAgent()
	n.startAgent()
	for name, ip := range portals {
		if got := n.portalOf(name); got != ip {
			t.Errorf("after a restart service %s moved from %s to %s", name, ip, got)
		}
	}
	n.waitService("web", time.Minute, endpointCount(2))
	for _, target := range []netip.AddrPort{web, external, netip.AddrPortFrom(added, 8082)} {
		if body, err := hostGet(target, "/"); err != nil || !strings.HasPrefix(body, "hello from web") {
			t.Errorf("after a restart %s: %q, %v", target, body, err)
		}
	}
	if after := n.containerIDs(); !maps.Equal(ids, after) {
		t.Errorf("an agent restart recreated containers:\nbefore %v\nafter  %v", ids, after)
	}
	n.nothingLeaked()
}

// The readiness of each replica is a file on the host, served by the
// replica's httpd: removing it fails the probe at once.
const rotationPods = `
pods: web: {
	replicas: 2
	restartPolicy: "Never" // a container stopped by hand stays stopped
	labels: app: "web"
	containers: httpd: {
		image: %[1]q
		command: ["sh", "-c", "exec httpd -f -p 8080 -h /host/$HOSTNAME"]
		ports: [{name: "http", containerPort: 8080}]
		volumeMounts: [{name: "www", mountPath: "/host", readOnly: true}]
		readinessProbe: {httpGet: {path: "/ready", port: "http"}, periodSeconds: %[3]d, failureThreshold: %[4]d}
	}
	volumes: www: hostPath: path: %[2]q
}
services: web: {selector: app: "web", ports: [{port: 80, targetPort: "http"}]}
`

func TestServicesReplicaLeavesTheRotation(t *testing.T) {
	eachProxyMode(t, testServicesReplicaLeavesTheRotation)
}

func testServicesReplicaLeavesTheRotation(t *testing.T, mode agent.ProxyMode) {
	n := newSvcNode(t, mode, true)
	const period, failures = 1, 2
	www := filepath.Join(n.hostDir, "www")
	for _, r := range []string{"web", "web-1"} {
		if err := os.MkdirAll(filepath.Join(www, r), 0o755); err != nil {
			t.Fatal(err)
		}
		for f, content := range map[string]string{"index.html": r + "\n", "ready": "ok\n"} {
			if err := os.WriteFile(filepath.Join(www, r, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	setReady := func(replica string, ready bool) {
		p := filepath.Join(www, replica, "ready")
		var err error
		if ready {
			err = os.WriteFile(p, []byte("ok\n"), 0o644)
		} else {
			err = os.Remove(p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	n.write("web.cue", fmt.Sprintf(rotationPods, podmantest.Image, www, period, failures))
	n.startAgent()
	n.waitService("web", 2*time.Minute, endpointCount(2))
	portal := netip.AddrPortFrom(n.portalOf("web"), 80)

	// rotation sends requests from the host until streak answers in a
	// row came from `only`, and returns when the last request that another
	// replica answered was sent. Every request must succeed: connections
	// open when a replica leaves may finish.
	rotation := func(only string, streak int, within time.Duration) (lastOther time.Time) {
		t.Helper()
		run := 0
		deadline := time.Now().Add(within)
		for run < streak {
			if time.Now().After(deadline) {
				t.Fatalf("requests to %s still not all answered by %s after %v", portal, only, within)
			}
			sent := time.Now()
			body, err := hostGet(portal, "/")
			if err != nil {
				t.Fatalf("request to %s: %v", portal, err)
			}
			if body == only {
				run++
			} else {
				run = 0
				lastOther = sent
			}
		}
		return lastOther
	}
	bothAnswer := func() {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() error {
			seen := map[string]int{}
			for range 4 {
				body, err := hostGet(portal, "/")
				if err != nil {
					return err
				}
				seen[body]++
			}
			if seen["web"] == 0 || seen["web-1"] == 0 {
				return fmt.Errorf("answers %v, want both replicas", seen)
			}
			return nil
		})
	}
	bothAnswer()

	t.Log("a replica that fails its readiness probe leaves within failureThreshold × periodSeconds + 1s")
	limit := time.Duration(failures*period)*time.Second + time.Second
	start := time.Now()
	setReady("web-1", false)
	last := rotation("web", 20, 30*time.Second)
	if took := last.Sub(start); took > limit {
		t.Errorf("web-1 got requests until %v after its probe started failing, want at most %v", took, limit)
	} else {
		t.Logf("web-1 got its last request %v after its probe started failing (limit %v)", took.Round(time.Millisecond), limit)
	}
	n.waitService("web", 5*time.Second, endpointCount(1))

	t.Log("and comes back once it passes again")
	setReady("web-1", true)
	n.waitService("web", 20*time.Second, endpointCount(2))
	bothAnswer()

	t.Log("a stopped replica leaves the rotation")
	start = time.Now()
	if _, err := n.pm.Run(n.ctx, "stop", "--time", "1", "web-1-httpd"); err != nil {
		t.Fatal(err)
	}
	stopTook := time.Since(start)
	n.waitService("web", 10*time.Second, endpointCount(1))
	if gone := time.Since(start) - stopTook; gone > limit {
		t.Errorf("the endpoint of the stopped replica was gone %v after podman stop returned, want at most %v", gone, limit)
	}
	t.Logf("podman stop took %v, the endpoint was gone %v after it returned", stopTook.Round(time.Millisecond), (time.Since(start) - stopTook).Round(time.Millisecond))
	rotation("web", 10, 10*time.Second)

	t.Log("zero endpoints: refused, not hung")
	setReady("web", false)
	n.waitService("web", limit+5*time.Second, endpointCount(0))
	if err := tcpRefused(portal); err != nil {
		t.Error(err)
	}
	n.nothingLeaked()
}

// The agent runs with a podman that is not there: services with fixed
// endpoints still serve, round robin, on their portals and external
// ports. In userspace mode an external port taken on the host is an
// error for its service only and heals once it is free; in nftables mode
// it is served all the same.
func TestServices_with_fixed_endpoints_serve_without_podman(t *testing.T) {
	eachProxyMode(t, testServices_with_fixed_endpoints_serve_without_podman)
}

func testServices_with_fixed_endpoints_serve_without_podman(t *testing.T, mode agent.ProxyMode) {
	n := newSvcNode(t, mode, false)
	n.extAddr = "127.0.0.1"
	var backends []string
	for i := range 3 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "backend %d\n", i)
		}))
		t.Cleanup(s.Close)
		backends = append(backends, s.Listener.Addr().String())
	}
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	freeExt := testenv.FreeTCPPort(t)
	n.write("fixed.cue", fmt.Sprintf(`
services: fixed: {
	endpoints: [%q, %q, %q]
	ports: [{name: "http", port: 8080, externalPort: %d}]
}
services: blocked: {
	endpoints: [%q]
	ports: [{port: 8081, externalPort: %d}]
}
`, backends[0], backends[1], backends[2], freeExt, backends[0], takenPort))
	n.startAgent("--resync", "2s")

	rep, err := n.report()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.PodmanDown {
		t.Errorf("report does not say podman is down: %+v", rep)
	}
	fixed := n.waitService("fixed", 10*time.Second, endpointCount(3))
	if fixed.Error != "" {
		t.Errorf("service fixed: error %q", fixed.Error)
	}
	portal := netip.MustParseAddr(fixed.PortalIP)
	for _, target := range []netip.AddrPort{
		netip.AddrPortFrom(portal, 8080),
		netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", freeExt)),
	} {
		seen := map[string]int{}
		for range 6 {
			body, err := hostGet(target, "/")
			if err != nil {
				t.Fatalf("%s: %v", target, err)
			}
			seen[body]++
		}
		if seen["backend 0"] != 2 || seen["backend 1"] != 2 || seen["backend 2"] != 2 {
			t.Errorf("6 requests to %s: %v, want 2 for each backend", target, seen)
		}
	}

	t.Log("a service added while podman is away is served within 2s")
	later := testenv.FreeTCPPort(t)
	start := time.Now()
	n.write("later.cue", fmt.Sprintf(`services: later: {endpoints: [%q], ports: [{port: 8082, externalPort: %d}]}`, backends[2], later))
	testenv.Eventually(t, 10*time.Second, func() error {
		body, err := hostGet(netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", later)), "/")
		if err == nil && body != "backend 2" {
			err = fmt.Errorf("answer %q", body)
		}
		return err
	})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a new service was served %v after its file was written, want within 2s", took)
	} else {
		t.Logf("a new service was served %v after its file was written", took.Round(time.Millisecond))
	}

	if n.mode == agent.ProxyNftables {
		// No socket is bound: the DNAT rule comes before any listener.
		t.Log("nftables mode: an external port a host program listens on is served all the same")
		blocked := n.waitService("blocked", 10*time.Second, endpointCount(1))
		if blocked.Error != "" {
			t.Errorf("service blocked: error %q, want none", blocked.Error)
		}
		if body, err := hostGet(netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", takenPort)), "/"); err != nil || body != "backend 0" {
			t.Errorf("the external port a host program listens on: %q, %v; want the service", body, err)
		}
		n.nothingLeaked()
		return
	}
	t.Log("a taken external port is an error for that service only")
	blocked := n.waitService("blocked", 10*time.Second, func(s agent.ServiceStatus) error {
		if !strings.Contains(s.Error, fmt.Sprint(takenPort)) {
			return fmt.Errorf("error %q does not name port %d", s.Error, takenPort)
		}
		return nil
	})
	t.Logf("service blocked: %s", blocked.Error)
	if body, err := hostGet(netip.AddrPortFrom(netip.MustParseAddr(blocked.PortalIP), 8081), "/"); err != nil || body != "backend 0" {
		t.Errorf("the portal of the service with a taken external port: %q, %v", body, err)
	}
	taken.Close()
	n.waitService("blocked", 15*time.Second, func(s agent.ServiceStatus) error {
		if s.Error != "" {
			return fmt.Errorf("still %q", s.Error)
		}
		return nil
	})
	if body, err := hostGet(netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", takenPort)), "/"); err != nil || body != "backend 0" {
		t.Errorf("the external port once free: %q, %v", body, err)
	}
	n.nothingLeaked()
}

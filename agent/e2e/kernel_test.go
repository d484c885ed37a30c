package e2e

// End-to-end tests of what only the kernel data path promises (SPEC §8):
// portals that outlive the agent, and a mode switch that leaves nothing
// of the old mode. What both modes promise is tested in both (see
// eachProxyMode here and in cmd/cuelet/cli).

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// webUnit has two replicas of an HTTP server answering its replica name,
// ready once it listens, behind the service web (port 80, and external
// port ext on every host address), and the fixed-endpoint service db in
// front of the test's hello server.
func webUnit(ext int, hello string) string {
	return fmt.Sprintf(`pods: web: {
	replicas: 2
	labels: app: "web"
	containers: httpd: {
		image: %q
		command: ["sh", "-c", "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
		ports: [{name: "http", containerPort: 8080}]
		readinessProbe: {httpGet: {path: "/", port: "http"}, periodSeconds: 1}
	}
}
services: web: {
	selector: app: "web"
	ports: [{port: 80, targetPort: "http", externalPort: %d}]
}
`, podmantest.Image, ext) + endpointService("db", hello, 5432)
}

// get fetches http://addr/ on a fresh connection and returns the body.
func get(addr string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", addr, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// servedBy gets addr count times and tallies the answers; any failure
// fails the test.
func servedBy(t *testing.T, addr string, count int, while string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := range count {
		body, err := get(addr)
		if err != nil {
			t.Errorf("%s, request %d to %s: %v", while, i, addr, err)
			continue
		}
		seen[body]++
	}
	return seen
}

func endpointsOf(service string, want int) func(*agent.Report) error {
	return func(rep *agent.Report) error {
		for _, s := range rep.Services {
			if s.Name == service {
				if len(s.Ports) == 0 || len(s.Ports[0].Endpoints) != want {
					return fmt.Errorf("service %s has ports %+v, want %d endpoints on the first", service, s.Ports, want)
				}
				return nil
			}
		}
		return fmt.Errorf("service %s not in the report", service)
	}
}

// In nftables mode the portals are rules in the kernel: a loop of
// connections sees no failure while the agent restarts, and with the
// agent SIGKILLed every portal (pods, fixed endpoint, external port on
// 127.0.0.1) keeps answering from every ready replica.
func TestNftablesPortalsOutliveTheAgent(t *testing.T) {
	t.Parallel()
	n := newNode(t, agent.ProxyNftables)
	ext := testenv.FreeTCPPort(t)
	n.Write("web.cue", webUnit(ext, agenttest.HelloServer(t)))
	a := n.Start(agenttest.Options{})
	rep := a.WaitSynced(startWithin, time.Time{}, endpointsOf("web", 2))
	web, err := portal(rep, "web")
	if err != nil {
		t.Fatal(err)
	}
	db, err := portal(rep, "db")
	if err != nil {
		t.Fatal(err)
	}
	external := net.JoinHostPort("127.0.0.1", strconv.Itoa(ext))
	both := func(addr, while string) {
		t.Helper()
		if seen := servedBy(t, addr, 6, while); seen["web"] != 3 || seen["web-1"] != 3 {
			t.Errorf("%s, 6 requests to %s: %v, want 3 from each replica", while, addr, seen)
		}
	}
	both(web, "agent running")
	both(external, "agent running")
	if err := dial(db); err != nil {
		t.Fatalf("agent running: %v", err)
	}
	if _, body, err := a.HTTPGet("/metrics"); err != nil || !connectionsCounted(body, "web") {
		t.Errorf("cuelet_proxy_connections_total counts no connection of web in nftables mode (%v):\n%s", err, grepLines(body, "cuelet_proxy_"))
	}

	t.Log("a loop of connections across an agent restart sees no failure")
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		done     int
		failures []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			switch i % 3 {
			case 0:
				_, err = get(web)
			case 1:
				_, err = get(external)
			default:
				err = dial(db)
			}
			mu.Lock()
			done++
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format(time.StampMilli), err))
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	a.Signal(syscall.SIGTERM)
	if _, err := a.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	b := n.Start(agenttest.Options{})
	b.WaitSynced(startWithin, restart, endpointsOf("web", 2))
	// The new agent's first pass has replaced the table; go on a moment
	// for the connections right after it.
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d connections across the restart (%v), %d failed", done, time.Since(restart).Round(time.Millisecond), len(failures))
	if len(failures) > 0 {
		t.Errorf("connections failed across the agent restart:\n%s", strings.Join(failures, "\n"))
	}

	t.Log("a SIGKILLed agent leaves every portal answering from every replica")
	b.Kill()
	both(web, "agent killed")
	both(external, "agent killed")
	keepsServing(t, db, "the agent killed")
	link, err := netlink.LinkByName(n.Link)
	if err != nil {
		t.Fatalf("the portal link after the agent was killed: %v", err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, a := range addrs {
		held = append(held, a.IP.String())
	}
	for _, p := range []string{web, db} {
		if host, _, _ := net.SplitHostPort(p); !slices.Contains(held, host) {
			t.Errorf("portal %s is gone from %s after the agent was killed: %v", host, n.Link, held)
		}
	}
}

var connectionsLine = regexp.MustCompile(`(?m)^cuelet_proxy_connections_total\{([^}]*)\} (\S+)$`)

// connectionsCounted reports whether /metrics counts at least one
// connection to a port of service.
func connectionsCounted(metrics, service string) bool {
	for _, m := range connectionsLine.FindAllStringSubmatch(metrics, -1) {
		if strings.Contains(m[1], `service="`+service+`"`) {
			if v, err := strconv.ParseFloat(m[2], 64); err == nil && v > 0 {
				return true
			}
		}
	}
	return false
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// guardObjects are the objects of the agent's table in both modes: the
// portal guard of netproxy.Node.
var guardObjects = []string{"chain forward", "chain input", "chain output", "set portal_ports"}

// nftObjects lists the chains, sets, maps and other named objects of the
// table, as "KIND NAME", from `nft -j list ruleset` (the tool an operator
// would look with), and fails the test when another table's name starts
// with the agent's: the mode may keep nothing outside its table.
func nftObjects(t *testing.T, table string) []string {
	t.Helper()
	out, err := exec.Command("nft", "-j", "list", "ruleset").Output()
	if err != nil {
		t.Fatalf("nft list ruleset: %v", err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j list ruleset: %v", err)
	}
	var objs []string
	for _, item := range doc.Nftables {
		for kind, raw := range item {
			var o struct {
				Family, Table, Name string
			}
			if json.Unmarshal(raw, &o) != nil {
				continue
			}
			switch {
			case kind == "table":
				if o.Name != table && strings.HasPrefix(o.Name, table) && o.Family == "ip" {
					t.Errorf("nftables table %s %s beside the agent's %s", o.Family, o.Name, table)
				}
			case kind == "rule" || kind == "metainfo":
			case o.Family == "ip" && o.Table == table:
				objs = append(objs, kind+" "+o.Name)
			}
		}
	}
	slices.Sort(objs)
	return objs
}

// listening reports the TCP sockets that listen on addr (IP:port), from
// /proc/net/tcp through ss.
func listening(t *testing.T, addr string) string {
	t.Helper()
	out, err := exec.Command("ss", "-Hltn", "src", addr).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// Switching modes (stop, start with the other mode) leaves nothing of the
// old mode (SPEC §8), checked with `nft list ruleset` and ss.
func TestSwitchingProxyModesLeavesNothingOfTheOldMode(t *testing.T) {
	t.Parallel()
	n := newNode(t, agent.ProxyNftables)
	hello := agenttest.HelloServer(t)
	n.Write("db.cue", endpointService("db", hello, 5432))
	start := func(mode agent.ProxyMode) (*agenttest.Agent, string) {
		t.Helper()
		n.ProxyMode = mode
		at := time.Now()
		a := n.Start(agenttest.Options{})
		rep := a.WaitSynced(startWithin, at, nil)
		if rep.ProxyMode != mode {
			t.Errorf("the report says proxy mode %q, want %q", rep.ProxyMode, mode)
		}
		db, err := portal(rep, "db")
		if err != nil {
			t.Fatal(err)
		}
		if err := dial(db); err != nil {
			t.Errorf("%s mode: %v", mode, err)
		}
		return a, db
	}
	stop := func(a *agenttest.Agent) {
		t.Helper()
		a.Signal(syscall.SIGTERM)
		if _, err := a.Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}

	a, db := start(agent.ProxyNftables)
	kernel := nftObjects(t, n.Table)
	t.Logf("nftables mode: table %s holds %v", n.Table, kernel)
	if len(kernel) <= len(guardObjects) {
		t.Errorf("nftables mode: table %s holds only %v, no rules of the kernel data path", n.Table, kernel)
	}
	if l := listening(t, db); l != "" {
		t.Errorf("nftables mode: something listens on the portal %s:\n%s", db, l)
	}
	stop(a)
	if after := nftObjects(t, n.Table); !slices.Equal(after, kernel) {
		t.Errorf("the stopped agent's rules changed: %v, before %v", after, kernel)
	}

	t.Log("nftables → userspace")
	a, db = start(agent.ProxyUserspace)
	if got := nftObjects(t, n.Table); !slices.Equal(got, guardObjects) {
		t.Errorf("userspace mode after nftables: table %s holds %v, want only the guard %v", n.Table, got, guardObjects)
	}
	if l := listening(t, db); l == "" {
		t.Errorf("userspace mode: nothing listens on the portal %s", db)
	}
	stop(a)

	t.Log("userspace → nftables")
	a, db = start(agent.ProxyNftables)
	if got := nftObjects(t, n.Table); !slices.Equal(got, kernel) {
		t.Errorf("nftables mode after userspace: table %s holds %v, want %v as before", n.Table, got, kernel)
	}
	if l := listening(t, db); l != "" {
		t.Errorf("nftables mode after userspace: something listens on the portal %s:\n%s", db, l)
	}
	stop(a)
	if err := dial(db); err != nil {
		t.Errorf("the stopped nftables agent's portal: %v", err)
	}
}

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

func TestAgent_tells_systemd_ready_status_watchdog_and_reload_and_serves_metrics(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	n.Write("db.cue", endpointService("db", agenttest.HelloServer(t), 5432))
	n.Write("web.cue", podUnit("web", 1, "1"))
	n.Write("bad.cue", `pods: bad: replicas: 1000`)
	start := time.Now()
	a := n.Start(agenttest.Options{Notify: true, Env: []string{"WATCHDOG_USEC=1000000"}})

	ready, i, err := a.Notify.Wait(0, startWithin, agenttest.Has("READY", "1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("READY=1 %v after start", ready.Time.Sub(start).Round(time.Millisecond))
	// STATUS= comes with or before READY=1 and sums up the first pass.
	var status string
	for _, m := range a.Notify.All()[:i+1] {
		if s, ok := m.Fields["STATUS"]; ok {
			status = s
		}
	}
	if status != "1 pod, 1 service, 1 invalid unit" {
		t.Errorf("STATUS=%q at READY=1", status)
	}
	// The first pass is done: the pod runs (SPEC §5: READY=1 once the
	// first reconcile pass is done).
	if err := n.Running("web"); err != nil {
		t.Errorf("at READY=1: %v", err)
	}
	if code, _, err := a.HTTPGet("/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("/readyz after READY=1: %d %v", code, err)
	}
	if code, _, err := a.HTTPGet("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz: %d %v", code, err)
	}

	// WATCHDOG_USEC=1s: pings every half second.
	first, j, err := a.Notify.Wait(i, 10*time.Second, agenttest.Has("WATCHDOG", "1"))
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := a.Notify.Wait(j+1, 10*time.Second, agenttest.Has("WATCHDOG", "1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("watchdog pings %v apart", second.Time.Sub(first.Time).Round(time.Millisecond))

	// A connection through a portal, for the proxy's series.
	rep, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	db, err := portal(rep, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(db); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		_, body, err := a.HTTPGet("/metrics")
		if err != nil {
			return err
		}
		for _, want := range []string{
			`(?m)^cuelet_sync_total [1-9]`,
			`(?m)^cuelet_sync_duration_seconds_count [1-9]`,
			`(?m)^cuelet_units\{state="valid"\} 2$`,
			`(?m)^cuelet_units\{state="invalid"\} 1$`,
			`(?m)^cuelet_pods\{state="Running"\} 1$`,
			`(?m)^cuelet_proxy_connections_total\{[^}]*service="db"[^}]*\} 1$`,
			`(?m)^cuelet_proxy_bytes_total\{[^}]*service="db"`,
			`(?m)^cuelet_sync_errors_total `,
		} {
			if !regexp.MustCompile(want).MatchString(body) {
				return fmt.Errorf("/metrics has no line matching %s:\n%s", want, cuelet(body))
			}
		}
		return nil
	})

	// A DNS query for the DNS series, then every documented series must be
	// on the page (those of --git-url are git_test's, the restarts crashloop_test's), and nothing else.
	dnsAddr := n.PortalCIDR.Addr()
	for range 10 {
		dnsAddr = dnsAddr.Next()
	}
	// Status says where the server is (SPEC §10), and the lookup goes there.
	if rep.DNS == nil || rep.DNS.Address != net.JoinHostPort(dnsAddr.String(), "53") || rep.DNS.Domain != "cluster.local" {
		t.Fatalf("status says DNS %+v, want %s:53 under cluster.local", rep.DNS, dnsAddr)
	}
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", rep.DNS.Address)
	}}
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if addrs, err := resolver.LookupHost(lctx, "db.svc.cluster.local."); err != nil || len(addrs) == 0 {
		t.Fatalf("DNS lookup of db at %s: %v %v", dnsAddr, addrs, err)
	}
	docs, err := agenttest.DocumentedSeries()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		_, body, err := a.HTTPGet("/metrics")
		if err != nil {
			return err
		}
		if err := agenttest.CheckMetrics(body, docs, func(s agenttest.Series) bool {
			return !strings.Contains(s.When, "--git-url") && s.When != "after a restart"
		}); err != nil {
			return err
		}
		for _, want := range []string{
			`(?m)^cuelet_service_ready_endpoints\{port="5432",service="db"\} 1$`,
			`(?m)^cuelet_build_info\{goversion="go[^"]+",podman_api_version="\d+\.\d+\.\d+",version="[^"]*"\} 1$`,
			// The connection above has ended.
			`(?m)^cuelet_proxy_active_connections\{port="5432",service="db"\} 0$`,
		} {
			if !regexp.MustCompile(want).MatchString(body) {
				return fmt.Errorf("/metrics has no line matching %s:\n%s", want, cuelet(body))
			}
		}
		return nil
	})

	// SIGHUP: RELOADING=1, then READY=1 once the pass is done.
	all := len(a.Notify.All())
	a.Signal(syscall.SIGHUP)
	_, k, err := a.Notify.Wait(all, changeWithin, agenttest.Has("RELOADING", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Notify.Wait(k+1, changeWithin, agenttest.Has("READY", "1")); err != nil {
		t.Fatal(err)
	}

	// SIGTERM: STOPPING=1.
	all = len(a.Notify.All())
	a.Signal(syscall.SIGTERM)
	if _, _, err := a.Notify.Wait(all, 10*time.Second, agenttest.Has("STOPPING", "1")); err != nil {
		t.Error(err)
	}
	if _, err := a.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// cuelet keeps the cuelet_ lines of a metrics page, for error messages.
func cuelet(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "cuelet_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

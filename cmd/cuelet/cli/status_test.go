package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/gitsource"
)

var statusNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// sampleReport has a pod crashing in a backoff, a pod with an unready
// container, a two-port service and an invalid unit.
func sampleReport() *agent.Report {
	now := statusNow
	return &agent.Report{
		Pods: []agent.PodStatus{
			{Replica: "web", Pod: "web", Unit: "web.cue", State: "Running", Ready: true, Created: now.Add(-3 * time.Minute), IP: "10.88.0.5",
				Containers: []agent.ContainerStatus{{Name: "app", State: "running", Ready: true}, {Name: "log", State: "running", Ready: true}}},
			{Replica: "web-1", Pod: "web", Unit: "web.cue", State: "Degraded", Reason: "CrashLoopBackOff", Restarts: 5, Created: now.Add(-50 * time.Hour), IP: "10.88.0.6",
				Containers: []agent.ContainerStatus{{Name: "app", State: "exited", Restarts: 5, StartedAt: now.Add(-90 * time.Second)}, {Name: "log", State: "running", Ready: true}}},
			{Replica: "db", Pod: "db", Unit: "db.cue", State: "Running", Created: now.Add(-(3*time.Hour + 5*time.Minute)),
				Containers: []agent.ContainerStatus{{Name: "db", State: "running"}}},
		},
		Services: []agent.ServiceStatus{
			{Name: "web", Unit: "web.cue", PortalIP: "10.96.0.20", Ports: []agent.PortStatus{
				{Name: "http", Protocol: "TCP", Port: 80, ExternalPort: 30080, Endpoints: []string{"10.88.0.5:8080"}},
				{Name: "admin", Protocol: "TCP", Port: 9000, Endpoints: []string{"10.88.0.5:9000"}},
			}},
			{Name: "dns", Unit: "db.cue", PortalIP: "10.96.0.53", Ports: []agent.PortStatus{{Protocol: "UDP", Port: 53}}},
			{Name: "many", Unit: "db.cue", PortalIP: "10.96.0.54", Ports: []agent.PortStatus{{Protocol: "TCP", Port: 80,
				Endpoints: []string{"10.88.0.1:80", "10.88.0.2:80", "10.88.0.3:80", "10.88.0.4:80", "10.88.0.5:80"}}}},
		},
		Units: []agent.UnitStatus{
			{ID: "web.cue", Valid: true},
			{ID: "db.cue", Valid: true},
			{ID: "bad.cue", LastGood: true, Problems: []manifests.Problem{
				{File: "bad.cue", Line: 2, Column: 12, Path: "pods.x.replicas", Message: "200 is above the maximum 100"},
				{File: "bad.cue", Line: 3, Column: 1, Message: "other"},
			}},
		},
		Rollouts: []agent.RolloutStatus{{Pod: "web", Unit: "web.cue", State: "waiting", Reason: "web-1 not ready"}},
		Errors:   agent.ErrorList{errors.New("cannot reach podman")},
	}
}

func TestPrintStatus_shows_kubectl_columns_and_every_ports_endpoints(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, sampleReport(), false, statusNow)
	want := `NAME    READY   STATUS             RESTARTS      AGE
web     2/2     Running            0             3m
web-1   1/2     CrashLoopBackOff   5 (90s ago)   2d2h
db      0/1     Running            0             3h5m

NAME   PORTAL       PORTS                   ENDPOINTS
web    10.96.0.20   80:30080/TCP,9000/TCP   10.88.0.5:8080,10.88.0.5:9000
dns    10.96.0.53   53/UDP                  <none>
many   10.96.0.54   80/TCP                  10.88.0.1:80,10.88.0.2:80,10.88.0.3:80 + 2 more...

UNIT      STATE                      PROBLEMS
web.cue   valid                      
db.cue    valid                      
bad.cue   invalid (last good kept)   bad.cue:2:12: pods.x.replicas: 200 is above the maximum 100 (+1 more)
rollout waiting: pod web: web-1 not ready
error: cannot reach podman
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintStatus_wide_adds_address_pod_and_unit_and_lists_everything(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, sampleReport(), true, statusNow)
	want := `NAME    READY   STATUS             RESTARTS      AGE    IP          POD   UNIT
web     2/2     Running            0             3m     10.88.0.5   web   web.cue
web-1   1/2     CrashLoopBackOff   5 (90s ago)   2d2h   10.88.0.6   web   web.cue
db      0/1     Running            0             3h5m   -           db    db.cue

NAME   PORTAL       PORTS                   ENDPOINTS                                                          UNIT
web    10.96.0.20   80:30080/TCP,9000/TCP   10.88.0.5:8080,10.88.0.5:9000                                      web.cue
dns    10.96.0.53   53/UDP                  <none>                                                             db.cue
many   10.96.0.54   80/TCP                  10.88.0.1:80,10.88.0.2:80,10.88.0.3:80,10.88.0.4:80,10.88.0.5:80   db.cue

UNIT      STATE                      PROBLEMS
web.cue   valid                      
db.cue    valid                      
bad.cue   invalid (last good kept)   bad.cue:2:12: pods.x.replicas: 200 is above the maximum 100
                                     bad.cue:3:1: other
rollout waiting: pod web: web-1 not ready
error: cannot reach podman
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintStatus_the_git_revision_leads_and_a_failing_fetch_is_said(t *testing.T) {
	rep := &agent.Report{Source: &agent.SourceStatus{
		Revision:   gitsource.Revision{Hash: "0123456789abcdef0123456789abcdef01234567", Subject: "web: two replicas"},
		FetchError: "git https://git.example.com/ops main: list remote refs: authentication required",
	}}
	var b bytes.Buffer
	printStatus(&b, rep, false, statusNow)
	want := `REVISION  0123456789abcdef0123456789abcdef01234567 web: two replicas
FETCH     failing, the revision above stays live: git https://git.example.com/ops main: list remote refs: authentication required

No pods, services or units.
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestFilterReport_keeps_what_the_names_name(t *testing.T) {
	tests := []struct {
		name                  string
		names                 []string
		pods, services, units string
		rollouts, missing     int
	}{
		{name: "a_replica", names: []string{"web-1"}, pods: "web-1", units: "web.cue", rollouts: 1},
		{name: "a_pod_definition_names_its_replicas", names: []string{"web"}, pods: "web web-1", services: "web", units: "web.cue", rollouts: 1},
		{name: "a_service", names: []string{"dns"}, services: "dns", units: "db.cue"},
		{name: "a_unit_names_all_it_defines", names: []string{"db.cue"}, pods: "db", services: "dns many", units: "db.cue"},
		{name: "an_unknown_name_is_missing", names: []string{"db", "nope"}, pods: "db", units: "db.cue", missing: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, missing := filterReport(sampleReport(), tt.names)
			var pods, services, units []string
			for _, p := range got.Pods {
				pods = append(pods, p.Replica)
			}
			for _, s := range got.Services {
				services = append(services, s.Name)
			}
			for _, u := range got.Units {
				units = append(units, u.ID)
			}
			if strings.Join(pods, " ") != tt.pods || strings.Join(services, " ") != tt.services || strings.Join(units, " ") != tt.units ||
				len(got.Rollouts) != tt.rollouts || len(missing) != tt.missing || len(got.Errors) != 1 {
				t.Fatalf("pods %q services %q units %q, %d rollouts, missing %q, %d errors; want %q %q %q, %d rollouts, %d missing, the 1 error",
					pods, services, units, len(got.Rollouts), missing, len(got.Errors), tt.pods, tt.services, tt.units, tt.rollouts, tt.missing)
			}
		})
	}
}

// A watch prints the first report, then again only when the report
// changes: not for a new pass's time, nor for the age moving on.
func TestShowStatus_watch_prints_again_only_on_a_change(t *testing.T) {
	pod := func(state string, pass int) *agent.Report {
		return &agent.Report{Time: statusNow.Add(time.Duration(pass) * time.Second), Duration: time.Duration(pass) * time.Millisecond,
			Pods: []agent.PodStatus{{Replica: "web-0", State: state, Created: statusNow.Add(-time.Minute)}}}
	}
	reports := []*agent.Report{pod("Running", 0), pod("Running", 1), pod("Degraded", 2), pod("Degraded", 3)}
	fetched := 0
	fetch := func(context.Context) (*agent.Report, error) {
		fetched++
		return reports[fetched-1], nil
	}
	tick := make(chan time.Time, len(reports)-1)
	for range len(reports) - 1 {
		tick <- statusNow
	}
	close(tick)
	now := statusNow
	clock := func() time.Time { now = now.Add(time.Minute); return now }
	var b bytes.Buffer
	if err := showStatus(context.Background(), &b, statusOptions{Watch: true}, fetch, clock, tick); err != nil {
		t.Fatal(err)
	}
	want := `NAME    READY   STATUS    RESTARTS   AGE
web-0   0/0     Running   0          2m

NAME    READY   STATUS     RESTARTS   AGE
web-0   0/0     Degraded   0          3m
`
	if got := b.String(); got != want || fetched != len(reports) {
		t.Fatalf("after %d fetches got:\n%s\nwant after %d:\n%s", fetched, got, len(reports), want)
	}
}

func TestShowStatus_names_that_match_nothing_fail_after_what_matched(t *testing.T) {
	fetch := func(context.Context) (*agent.Report, error) { return sampleReport(), nil }
	var b bytes.Buffer
	err := showStatus(context.Background(), &b, statusOptions{Names: []string{"db", "nope"}}, fetch, func() time.Time { return statusNow }, nil)
	if err == nil || !strings.Contains(err.Error(), "not found: nope") {
		t.Fatalf("error %v, want not found: nope", err)
	}
	if !strings.HasPrefix(b.String(), "NAME   READY") || !strings.Contains(b.String(), "\ndb ") {
		t.Fatalf("printed:\n%s\nwant the db pod", b.String())
	}
}

func TestFilterReport_keeps_the_events_about_what_it_keeps_and_the_nodes(t *testing.T) {
	got, _ := filterReport(describeReport(), []string{"web-1"})
	var msgs []string
	for _, e := range got.Events {
		msgs = append(msgs, e.Message)
	}
	want := "+ pod web-1 | pod web-1: start: exit 1 | cannot reach podman"
	if g := strings.Join(msgs, " | "); g != want {
		t.Fatalf("events %q, want %q", g, want)
	}
}

func TestPrintStatus_the_proxy_mode_heads_the_tables_and_says_whether_portals_outlive_the_agent(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  agent.Report
		want string
	}{
		{
			name: "nftables",
			rep:  agent.Report{ProxyMode: agent.ProxyNftables},
			want: "PROXY     nftables (kernel rules: portals keep serving while the agent is away)\n\nNo pods",
		},
		{
			name: "userspace",
			rep:  agent.Report{ProxyMode: agent.ProxyUserspace},
			want: "PROXY     userspace (the agent's process: portals stop while it is away)\n\nNo pods",
		},
		{
			name: "after_the_git_revision",
			rep:  agent.Report{ProxyMode: agent.ProxyNftables, Source: &agent.SourceStatus{}},
			want: "REVISION  none yet\nPROXY     nftables (kernel rules: portals keep serving while the agent is away)\n\nNo pods",
		},
		{
			name: "then_the_DNS_server",
			rep:  agent.Report{ProxyMode: agent.ProxyUserspace, DNS: &agent.DNSStatus{Address: "10.96.0.10:53", Domain: "cluster.local"}},
			want: "PROXY     userspace (the agent's process: portals stop while it is away)\nDNS       10.96.0.10:53 (<service>.svc.cluster.local)\n\nNo pods",
		},
		{
			name: "an_agent_that_does_not_say",
			rep:  agent.Report{},
			want: "No pods",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, &tc.rep, false, statusNow)
			if !strings.HasPrefix(b.String(), tc.want) {
				t.Fatalf("got:\n%s\nwant it to begin with:\n%s", b.String(), tc.want)
			}
		})
	}
}

package agent

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSnapshot_counts_one_pass(t *testing.T) {
	running := PodStatus{State: "Running"}
	prev := &passSnapshot{pods: map[string]int{"Running": 2, "Exited": 1}}
	for _, tc := range []struct {
		name     string
		report   Report
		prev     *passSnapshot
		wantText string
	}{{
		name:     "units_and_pods_by_state",
		report:   Report{Units: []UnitStatus{{Valid: true}, {Valid: true}, {}}, Pods: []PodStatus{running, running, {State: "Degraded"}}},
		wantText: "units 2/1 pods Degraded=1 Running=2 endpoints",
	}, {
		name:     "podman_down_keeps_the_last_known_pod_states",
		report:   Report{PodmanDown: true},
		prev:     prev,
		wantText: "units 0/0 pods Exited=1 Running=2 endpoints",
	}, {
		name:     "podman_down_at_the_start_has_no_pods",
		report:   Report{PodmanDown: true},
		wantText: "units 0/0 pods endpoints",
	}, {
		name:     "podman_back_drops_states_no_pod_has_any_more",
		report:   Report{Pods: []PodStatus{running}},
		prev:     prev,
		wantText: "units 0/0 pods Running=1 endpoints",
	}, {
		name: "ready_endpoints_per_port_by_name_or_number",
		report: Report{Services: []ServiceStatus{
			{Name: "web", Ports: []PortStatus{{Name: "http", Port: 80, Endpoints: []string{"a", "b"}}, {Port: 443, Endpoints: []string{"a"}}}},
			{Name: "db", Ports: []PortStatus{{Port: 5432}}},
		}},
		wantText: "units 0/0 pods endpoints web/http=2 web/443=1 db/5432=0",
	}, {
		name: "one_number_over_tcp_and_udp_shows_the_fewer",
		report: Report{Services: []ServiceStatus{
			{Name: "dns", Ports: []PortStatus{{Port: 53, Protocol: "UDP", Endpoints: []string{"a", "b"}}, {Port: 53, Protocol: "TCP", Endpoints: []string{"a"}}}},
		}},
		wantText: "units 0/0 pods endpoints dns/53=1",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := snapshotText(snapshot(&tc.report, tc.prev)); got != tc.wantText {
				t.Errorf("got  %s\nwant %s", got, tc.wantText)
			}
		})
	}
}

func snapshotText(s *passSnapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "units %d/%d pods", s.units[0], s.units[1])
	var pods []string
	for k, v := range s.pods {
		pods = append(pods, fmt.Sprintf("%s=%d", k, v))
	}
	slices.Sort(pods)
	for _, p := range pods {
		b.WriteString(" " + p)
	}
	b.WriteString(" endpoints")
	for _, e := range s.endpoints {
		fmt.Fprintf(&b, " %s/%s=%d", e.service, e.port, e.ready)
	}
	return b.String()
}

// TestPodsSeries_never_show_a_partial_pass scrapes while passes with
// different pod states are recorded: every pass has three pods, so every
// scrape must count three. Resetting a GaugeVec and counting up again,
// as cuelet did, lets a scrape in between see fewer.
func TestPodsSeries_never_show_a_partial_pass(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, buildInfo{})
	reports := []*Report{
		{Pods: []PodStatus{{State: "Running"}, {State: "Running"}, {State: "Running"}}},
		{Pods: []PodStatus{{State: "Running"}, {State: "Exited"}, {State: "Degraded"}}},
	}
	m.observe(reports[0])
	const passes = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range passes {
			m.observe(reports[i%2])
		}
	}()
	var bad []float64
	for range passes {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "cuelet_pods" {
				for _, x := range mf.GetMetric() {
					total += x.GetGauge().GetValue()
				}
			}
		}
		if total != 3 {
			bad = append(bad, total)
		}
		runtime.Gosched()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d of %d scrapes saw a partial pass (pod totals %v), want 3 every time", len(bad), passes, bad[:min(len(bad), 10)])
	}
}

func TestBuildInfo_names_cuelet_go_and_the_podman_it_talks_to(t *testing.T) {
	podman := ""
	reg := prometheus.NewRegistry()
	newMetrics(reg, buildInfo{version: "v1.2.3", podman: func() string { return podman }})
	want := func(podman string) string {
		return fmt.Sprintf(`
# HELP cuelet_build_info 1, labelled with cuelet's version, the Go version it was built with and the podman API version it talks to (empty until podman answered).
# TYPE cuelet_build_info gauge
cuelet_build_info{goversion=%q,podman_api_version=%q,version="v1.2.3"} 1
`, runtime.Version(), podman)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want("")), "cuelet_build_info"); err != nil {
		t.Errorf("before podman answered: %v", err)
	}
	podman = "4.3.1"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want("4.3.1")), "cuelet_build_info"); err != nil {
		t.Errorf("once podman answered: %v", err)
	}
}

func TestSyncErrors_count_passes_with_errors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, buildInfo{})
	m.observe(&Report{})
	m.observe(&Report{Errors: ErrorList{errors.New("podman away")}, PodmanDown: true})
	if got := testutil.ToFloat64(m.errors); got != 1 {
		t.Errorf("cuelet_sync_errors_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.podmanUp); got != 0 {
		t.Errorf("cuelet_podman_up = %v, want 0", got)
	}
}

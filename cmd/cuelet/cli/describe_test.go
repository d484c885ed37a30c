package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
)

// describeReport is sampleReport with a probe, a backoff and events.
func describeReport() *agent.Report {
	rep := sampleReport()
	p := &rep.Pods[1]
	p.Phase, p.Condition, p.NextRestart = "Failed", "container app exited (exit code 1)", statusNow.Add(20*time.Second)
	p.Containers[0].ExitCode = 1
	p.Containers[0].Probe = "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"
	rep.Pods[0].Phase = "Running"
	rep.Events = []agent.Event{
		{Time: statusNow.Add(-time.Hour), Type: "Normal", Object: "pod", Name: "web-1", Message: "+ pod web-1", Count: 1, LastTime: statusNow.Add(-time.Hour)},
		{Time: statusNow.Add(-time.Hour), Type: "Normal", Object: "service", Name: "web", Message: "+ service web 10.96.0.20:80/TCP", Count: 1, LastTime: statusNow.Add(-time.Hour)},
		{Time: statusNow.Add(-10 * time.Minute), Type: "Warning", Object: "pod", Name: "web-1", Message: "pod web-1: start: exit 1", Count: 5, LastTime: statusNow.Add(-90 * time.Second)},
		{Time: statusNow.Add(-time.Minute), Type: "Warning", Message: "cannot reach podman", Count: 1, LastTime: statusNow.Add(-time.Minute)},
	}
	return rep
}

func TestPrintDescribe_a_replica_shows_containers_probes_endpoints_rollout_and_events(t *testing.T) {
	rep := describeReport()
	targets, missing := describeTargets(rep, []string{"web-1"})
	if len(targets) != 1 || missing != nil {
		t.Fatalf("targets %v, missing %v", targets, missing)
	}
	var b bytes.Buffer
	printDescribe(&b, rep, targets, statusNow, time.UTC)
	want := `Name:          web-1
Pod:           web
Unit:          web.cue
Created:       Tue, 24 Nov 2026 10:00:00 +0000 (2d2h ago)
IP:            10.88.0.6
Status:        Degraded
Reason:        CrashLoopBackOff
Next restart:  Thu, 26 Nov 2026 12:00:20 +0000 (in 20s)
Phase:         Failed
Ready:         false (1/2 containers)
Not serving:   container app exited (exit code 1)
Restarts:      5
Containers:
  app:
    State:      exited (exit code 1)
    Started:    Thu, 26 Nov 2026 11:58:30 +0000 (90s ago)
    Ready:      false
    Restarts:   5
    Readiness:  http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3
  log:
    State:     running
    Ready:     true
    Restarts:  0
Endpoints:     <none>
Rollout:       waiting: web-1 not ready
Events:
  Type     Age                Message
  ----     ---                -------
  Normal   60m                + pod web-1
  Warning  90s (x5 over 10m)  pod web-1: start: exit 1
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintDescribe_a_service_shows_each_port_with_its_endpoints(t *testing.T) {
	rep := describeReport()
	rep.Services[0].Error = "listen 0.0.0.0:30080: address in use"
	targets, _ := describeTargets(rep, []string{"service", "web"})
	var b bytes.Buffer
	printDescribe(&b, rep, targets, statusNow, time.UTC)
	want := `Name:           web
Unit:           web.cue
Portal:         10.96.0.20
Error:          listen 0.0.0.0:30080: address in use
Port:           http 80/TCP
External port:  30080/TCP
Endpoints:      10.88.0.5:8080
Port:           admin 9000/TCP
Endpoints:      10.88.0.5:9000
Events:
  Type    Age  Message
  ----    ---  -------
  Normal  60m  + service web 10.96.0.20:80/TCP
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestDescribeTargets_finds_replicas_pod_definitions_and_services(t *testing.T) {
	tests := []struct {
		args          []string
		want, missing string
	}{
		{args: []string{"web-1"}, want: "pod web-1", missing: ""},
		{args: []string{"web"}, want: "pod web, service web", missing: ""},
		{args: []string{"pod", "web"}, want: "pod web", missing: ""},
		{args: []string{"db"}, want: "pod db", missing: ""},
		{args: []string{"svc", "web", "dns"}, want: "service web, service dns", missing: ""},
		{args: []string{"db", "nope"}, want: "pod db", missing: "nope"},
		{args: []string{"svc"}, want: "", missing: "svc"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			targets, missing := describeTargets(describeReport(), tt.args)
			var got []string
			for _, t := range targets {
				if t.pod != nil {
					got = append(got, "pod "+t.pod.Replica)
				} else {
					got = append(got, "service "+t.service.Name)
				}
			}
			if g, m := strings.Join(got, ", "), strings.Join(missing, ", "); g != tt.want || m != tt.missing {
				t.Fatalf("targets %q, missing %q; want %q, %q", g, m, tt.want, tt.missing)
			}
		})
	}
}

func TestPrintDescribe_a_ready_replica_names_the_service_ports_it_serves(t *testing.T) {
	rep := describeReport()
	targets, _ := describeTargets(rep, []string{"pod", "web"})
	var b bytes.Buffer
	printDescribe(&b, rep, targets, statusNow, time.UTC)
	want := "\nEndpoints:     web 80:30080/TCP -> 10.88.0.5:8080, web 9000/TCP -> 10.88.0.5:9000, many 80/TCP -> 10.88.0.5:80\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("got:\n%s\nwant a line %q", b.String(), want)
	}
}

package cli

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/manifests/gitsource"
)

func TestPrintStatus_tables(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	rep := &agent.Report{
		Pods: []agent.PodStatus{
			{Replica: "web", State: "Running", Ready: true, Restarts: 1, Created: now.Add(-3 * time.Minute), Unit: "web.cue"},
			{Replica: "web-1", State: "Degraded", Created: now.Add(-50 * time.Hour), Unit: "web.cue", Error: "image missing"},
			{Replica: "job", State: "Degraded", Restarts: 3, Created: now.Add(-time.Minute), Unit: "job.cue", Reason: "CrashLoopBackOff", NextRestart: now.Add(40 * time.Second)},
		},
		Services: []agent.ServiceStatus{
			{Name: "web", PortalIP: "10.96.0.20", Ports: []agent.PortStatus{{Protocol: "TCP", Port: 80, ExternalPort: 30080}}, Endpoints: []string{"10.88.0.5:8080"}},
			{Name: "dns", PortalIP: "10.96.0.53", Ports: []agent.PortStatus{{Protocol: "UDP", Port: 53}}},
		},
		Units: []agent.UnitStatus{
			{ID: "web.cue", Valid: true},
			{ID: "bad.cue", LastGood: true, Problems: []string{"bad.cue:2:12: pods.x.replicas: 200 is above the maximum 100", "bad.cue:3:1: other"}},
		},
		Errors: agent.ErrorList{errors.New("cannot reach podman")},
	}
	var b bytes.Buffer
	printStatus(&b, rep, now)
	want := `POD    STATE                                                   READY  RESTARTS  AGE  UNIT
web    Running                                                 true   1         3m   web.cue
web-1  Degraded (image missing)                                false  0         2d   web.cue
job    Degraded (CrashLoopBackOff, next try 12:00:40, in 40s)  false  3         1m   job.cue

SERVICE  PORTAL      PORTS   EXTERNAL   ENDPOINTS
web      10.96.0.20  80/TCP  30080/TCP  10.88.0.5:8080
dns      10.96.0.53  53/UDP  -          <none>

UNIT     STATE                     PROBLEM
web.cue  valid                     
bad.cue  invalid (last good kept)  bad.cue:2:12: pods.x.replicas: 200 is above the maximum 100 (+1 more)
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
	printStatus(&b, rep, time.Now())
	want := `REVISION  0123456789abcdef0123456789abcdef01234567 web: two replicas
FETCH     failing, the revision above stays live: git https://git.example.com/ops main: list remote refs: authentication required

POD  STATE  READY  RESTARTS  AGE  UNIT

SERVICE  PORTAL  PORTS  EXTERNAL  ENDPOINTS

UNIT  STATE  PROBLEM
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/gitsource"
)

func TestReport_Summary(t *testing.T) {
	tests := []struct {
		name   string
		report Report
		want   string
	}{
		{
			name:   "empty_node",
			report: Report{},
			want:   "0 pods, 0 services, 0 invalid units",
		},
		{
			name: "singulars_and_an_invalid_unit",
			report: Report{
				Pods:     []PodStatus{{Replica: "web"}},
				Services: []ServiceStatus{{Name: "web"}},
				Units:    []UnitStatus{{ID: "a.cue", Valid: true}, {ID: "b.cue"}},
			},
			want: "1 pod, 1 service, 1 invalid unit",
		},
		{
			name:   "podman_down_is_said",
			report: Report{PodmanDown: true, Errors: ErrorList{errors.New("cannot reach podman")}},
			want:   "0 pods, 0 services, 0 invalid units; podman unreachable",
		},
		{
			name:   "other_errors_are_counted",
			report: Report{Errors: ErrorList{errors.New("a"), errors.New("b")}},
			want:   "0 pods, 0 services, 0 invalid units; 2 errors",
		},
		{
			name:   "the_git_revision_is_said",
			report: Report{Source: &SourceStatus{Revision: gitsource.Revision{Hash: "0123456789abcdef", Subject: "web: two replicas"}}},
			want:   "0 pods, 0 services, 0 invalid units; revision 0123456 web: two replicas",
		},
		{
			name: "a_failing_fetch_is_said_with_the_revision_kept",
			report: Report{Source: &SourceStatus{
				Revision:   gitsource.Revision{Hash: "0123456789abcdef", Subject: "one"},
				FetchError: "git x main: list remote refs: repository not found",
			}},
			want: "0 pods, 0 services, 0 invalid units; revision 0123456 one (fetch failing)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.report.Summary(); got != tt.want {
				t.Fatalf("Summary() = %q, want %q", got, tt.want)
			}
		})
	}
}

// The errors of a pass are error values inside the agent; `cuelet status
// --json` and the status socket still carry their messages, in the place
// and form they always had.
func TestReport_JSON_has_the_error_messages_and_reads_them_back(t *testing.T) {
	rep := Report{
		Actions:    []string{"+ pod web"},
		Errors:     ErrorList{fmt.Errorf("list pods: %w", errors.New("cannot reach podman")), errors.New("pod web: boom")},
		PodmanDown: true,
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := `"actions":["+ pod web"],"errors":["list pods: cannot reach podman","pod web: boom"],"podmanDown":true`
	if !strings.Contains(string(b), want) {
		t.Fatalf("JSON %s\ndoes not hold %s", b, want)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Errors.Strings(); !slices.Equal(got, rep.Errors.Strings()) {
		t.Fatalf("read back %q, want %q", got, rep.Errors.Strings())
	}
	clean, err := json.Marshal(Report{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(clean), "errors") {
		t.Fatalf("a report without errors has an errors key: %s", clean)
	}
}

// Durations in the status JSON are seconds, as people and Prometheus read
// them, not Go's nanoseconds; they read back to the same duration.
func TestReport_JSON_holds_the_duration_in_seconds(t *testing.T) {
	rep := Report{Duration: 2318647575 * time.Nanosecond}
	b, err := json.Marshal(&rep)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if got := raw["duration"]; got != 2.318647575 {
		t.Fatalf("duration in JSON = %v, want 2.318647575 (seconds): %s", got, b)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Duration != rep.Duration {
		t.Fatalf("read back %v, want %v", back.Duration, rep.Duration)
	}
}

// A unit's problems are the objects `cuelet validate --json` prints, not
// lines to parse again.
func TestReport_JSON_gives_problems_as_validate_does(t *testing.T) {
	rep := Report{Units: []UnitStatus{{ID: "bad.cue", Problems: []manifests.Problem{
		{File: "bad.cue", Line: 2, Column: 12, Path: "pods.x.replicas", Message: "200 is above the maximum 100"},
	}}}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := `"problems":[{"file":"bad.cue","line":2,"column":12,"path":"pods.x.replicas","message":"200 is above the maximum 100"}]`
	if !strings.Contains(string(b), want) {
		t.Fatalf("JSON %s\ndoes not hold %s", b, want)
	}
}

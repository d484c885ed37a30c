package agent

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cuelet/cuelet/reconcile"
)

func TestHistory_keeps_actions_of_earlier_passes_and_counts_a_repeated_problem(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var h history
	h.record(&Report{Actions: []string{"+ pod web-1", "+ service web 10.96.0.20:80/TCP"}}, t0)
	podErr := &reconcile.PodError{Pod: "web-2", Unit: "web.cue", Err: errors.New("image missing")}
	h.record(&Report{Errors: ErrorList{podErr, errors.New("program portals: boom")}}, t0.Add(time.Minute))
	got := h.record(&Report{Errors: ErrorList{podErr}}, t0.Add(2*time.Minute))

	want := []Event{
		{Time: t0, Type: "Normal", Object: "pod", Name: "web-1", Message: "+ pod web-1", Count: 1, LastTime: t0},
		{Time: t0, Type: "Normal", Object: "service", Name: "web", Message: "+ service web 10.96.0.20:80/TCP", Count: 1, LastTime: t0},
		{Time: t0.Add(time.Minute), Type: "Warning", Message: "program portals: boom", Count: 1, LastTime: t0.Add(time.Minute)},
		{Time: t0.Add(time.Minute), Type: "Warning", Object: "pod", Name: "web-2", Message: "pod web-2: image missing", Count: 2, LastTime: t0.Add(2 * time.Minute)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history:\n%v\nwant:\n%v", got, want)
	}
}

func TestHistory_drops_the_oldest_events_beyond_its_bound(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var h history
	var got []Event
	for i := range maxEvents + 5 {
		got = h.record(&Report{Actions: []string{fmt.Sprintf("+ pod web-%d", i)}}, t0.Add(time.Duration(i)*time.Second))
	}
	if len(got) != maxEvents {
		t.Fatalf("%d events kept, want %d", len(got), maxEvents)
	}
	if got[0].Name != "web-5" || got[len(got)-1].Name != fmt.Sprintf("web-%d", maxEvents+4) {
		t.Fatalf("kept %s … %s, want web-5 … web-%d", got[0].Name, got[len(got)-1].Name, maxEvents+4)
	}
}

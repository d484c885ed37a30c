package agent

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cuelet/cuelet/reconcile/svcenv"
)

func TestEnvMemo_renders_again_only_when_a_service_or_its_portal_changed(t *testing.T) {
	services := func(host string, port int) []svcenv.Service {
		return []svcenv.Service{
			{Name: "db", Host: netip.MustParseAddr("10.96.0.1"), Ports: []svcenv.Port{{Name: "pg", Protocol: "TCP", Port: 5432}}},
			{Name: "web", Host: netip.MustParseAddr(host), Ports: []svcenv.Port{{Protocol: "TCP", Port: port}}},
		}
	}
	var m envMemo
	for _, step := range []struct {
		name string
		in   []svcenv.Service
	}{
		{"first", services("10.96.0.2", 80)},
		{"unchanged", services("10.96.0.2", 80)},
		{"a port changed", services("10.96.0.2", 8080)},
		{"a portal changed", services("10.96.0.3", 8080)},
		{"a service gone", services("10.96.0.3", 8080)[:1]},
		{"none", nil},
		{"back", services("10.96.0.2", 80)},
	} {
		got, want := m.lines(step.in), svcenv.Lines(step.in)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %q, want %q", step.name, got, want)
		}
	}
	// What a caller appends does not reach the memo.
	in := services("10.96.0.2", 80)
	_ = append(m.lines(in), "EXTRA=1")
	if got := m.lines(in); slices.Contains(got, "EXTRA=1") || len(got) != len(svcenv.Lines(in)) {
		t.Fatalf("the memo kept a caller's append: %q", got)
	}
}

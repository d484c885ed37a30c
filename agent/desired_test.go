package agent

import (
	"net/netip"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
)

var testOpts = manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/16")}

// mustUnit loads one in-memory unit.
func mustUnit(t *testing.T, name, src string) *manifests.Unit {
	t.Helper()
	u, err := manifests.LoadSource(name, map[string][]byte{name: []byte(src)}, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// memLastGood is a last good store in memory.
type memLastGood map[string]string

func (m memLastGood) Get(id string) (map[string][]byte, bool, error) {
	src, ok := m[id]
	if !ok {
		return nil, false, nil
	}
	return map[string][]byte{id: []byte(src)}, true, nil
}

const (
	webPod   = "pods: web: {labels: app: \"web\", containers: app: image: \"busybox\"}\n"
	webSvc   = "services: web: {selector: app: \"web\", ports: [{port: 80}]}\n"
	broken   = "pods: web: {replicas: 200, containers: app: image: \"busybox\"}\n"
	dbPod    = "pods: db: containers: app: image: \"busybox\"\n"
	otherWeb = "pods: web: containers: app: image: \"nginx\"\n"
)

func TestDesiredState(t *testing.T) {
	tests := []struct {
		name      string
		units     map[string]string // id -> source, as found on disk
		lastGood  memLastGood
		wantValid map[string]bool // found unit valid?
		wantLG    map[string]bool // last good copy applied?
		wantPods  []string        // pod names applied over all units
	}{
		{
			name:      "valid_units_are_applied_as_found",
			units:     map[string]string{"a.cue": webPod + webSvc, "b.cue": dbPod},
			wantValid: map[string]bool{"a.cue": true, "b.cue": true},
			wantLG:    map[string]bool{},
			wantPods:  []string{"web", "db"},
		},
		{
			name:      "invalid_unit_with_a_last_good_copy_applies_the_copy",
			units:     map[string]string{"a.cue": broken},
			lastGood:  memLastGood{"a.cue": webPod + webSvc},
			wantValid: map[string]bool{"a.cue": false},
			wantLG:    map[string]bool{"a.cue": true},
			wantPods:  []string{"web"},
		},
		{
			name:      "invalid_unit_without_a_copy_applies_nothing",
			units:     map[string]string{"a.cue": broken},
			wantValid: map[string]bool{"a.cue": false},
			wantLG:    map[string]bool{},
			wantPods:  nil,
		},
		{
			// b.cue took the name web while a.cue, which had it, broke:
			// both are invalid; a.cue's copy is dropped (its pods stay
			// untouched as for any invalid unit), b.cue has no copy.
			name:      "last_good_copy_that_conflicts_invalidates_both",
			units:     map[string]string{"a.cue": broken, "b.cue": otherWeb},
			lastGood:  memLastGood{"a.cue": webPod},
			wantValid: map[string]bool{"a.cue": false, "b.cue": false},
			wantLG:    map[string]bool{},
			wantPods:  nil,
		},
		{
			// As above, but b.cue has a copy of its own without web: it
			// falls back to it.
			name:      "unit_invalidated_by_a_conflict_falls_back_to_its_own_copy",
			units:     map[string]string{"a.cue": broken, "b.cue": otherWeb + dbPod},
			lastGood:  memLastGood{"a.cue": webPod, "b.cue": dbPod},
			wantValid: map[string]bool{"a.cue": false, "b.cue": false},
			wantLG:    map[string]bool{"b.cue": true},
			wantPods:  []string{"db"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var found []*manifests.Unit
			for id, src := range tt.units {
				found = append(found, mustUnit(t, id, src))
			}
			manifests.CheckCrossUnit(found)
			var lg lastGoodSource
			if tt.lastGood != nil {
				lg = tt.lastGood
			}
			eff := desiredState(found, lg, testOpts, zerolog.Nop())
			var pods []string
			for _, e := range eff {
				if got := e.found.Valid(); got != tt.wantValid[e.found.ID] {
					t.Errorf("%s valid = %v, want %v (problems %v)", e.found.ID, got, tt.wantValid[e.found.ID], e.found.Problems)
				}
				if e.lastGood != tt.wantLG[e.found.ID] {
					t.Errorf("%s last good applied = %v, want %v", e.found.ID, e.lastGood, tt.wantLG[e.found.ID])
				}
				for _, p := range e.applied.Pods {
					pods = append(pods, p.Name)
				}
			}
			if !sameSet(pods, tt.wantPods) {
				t.Errorf("applied pods %v, want %v", pods, tt.wantPods)
			}
		})
	}
}

func TestUnitStatuses_show_problems_and_last_good(t *testing.T) {
	found := []*manifests.Unit{mustUnit(t, "b.cue", broken), mustUnit(t, "a.cue", dbPod)}
	eff := desiredState(found, memLastGood{"b.cue": webPod}, testOpts, zerolog.Nop())
	st := unitStatuses(eff)
	if len(st) != 2 || st[0].ID != "a.cue" || !st[0].Valid || st[1].ID != "b.cue" || st[1].Valid || !st[1].LastGood {
		t.Fatalf("statuses = %+v", st)
	}
	if want := "b.cue:1:23: pods.web.replicas: 200 is above the maximum 100"; len(st[1].Problems) != 1 || st[1].Problems[0].String() != want {
		t.Fatalf("problems = %q, want %q", st[1].Problems, want)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

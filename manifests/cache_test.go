package manifests

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var cacheOpts = Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/16")}

func writeUnit(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func service(name string, externalPort int) string {
	return fmt.Sprintf("services: %q: {endpoints: [\"db:5432\"], ports: [{port: 5432, externalPort: %d}]}\n", name, externalPort)
}

// loadBoth loads dir through the cache and without it, and fails when the
// two differ: the cache must never change what a load finds.
func loadBoth(t *testing.T, c *Cache, dir string) []*Unit {
	t.Helper()
	ctx := context.Background()
	got, err := c.LoadDir(ctx, dir, cacheOpts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := LoadDir(ctx, dir, cacheOpts)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withoutPlaces(got), withoutPlaces(want)) {
		t.Fatalf("through the cache:\n%+v\nwithout:\n%+v", got, want)
	}
	return got
}

// withoutPlaces copies units without their places, which index the files
// only when a problem first needs a position, so two equal units may be
// at different stages of it.
func withoutPlaces(units []*Unit) []*Unit {
	out := make([]*Unit, len(units))
	for i, u := range units {
		out[i] = u.Clone()
		out[i].places = nil
	}
	return out
}

func TestCacheChecksOnlyTheUnitsWhoseFilesChanged(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", service("a", 30001))
	writeUnit(t, dir, "b.cue", service("b", 30002))
	writeUnit(t, dir, "c.cue", service("c", 30003))
	var c Cache

	loadBoth(t, &c, dir)
	if n := c.Checked(); n != 3 {
		t.Fatalf("first load checked %d units, want 3", n)
	}
	loadBoth(t, &c, dir)
	if n := c.Checked(); n != 3 {
		t.Fatalf("a load with nothing changed checked %d units, want none", n-3)
	}
	writeUnit(t, dir, "b.cue", service("b", 30012))
	units := loadBoth(t, &c, dir)
	if n := c.Checked(); n != 4 {
		t.Fatalf("a load with one file changed checked %d units, want 1", n-3)
	}
	if got := units[1].Services[0].Ports[0].ExternalPort; got != 30012 {
		t.Fatalf("b's externalPort is %d after the change, want 30012", got)
	}
}

func TestCacheChecksAgainWhenTheOptionsChange(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", `services: a: {endpoints: ["db:5432"], portalIP: "10.96.0.5", ports: [{port: 5432}]}`)
	var c Cache
	ctx := context.Background()
	units, err := c.LoadDir(ctx, dir, cacheOpts)
	if err != nil || !units[0].Valid() {
		t.Fatalf("load: %v %+v", err, units)
	}
	units, err = c.LoadDir(ctx, dir, Options{PortalCIDR: netip.MustParsePrefix("10.97.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	if c.Checked() != 2 || units[0].Valid() {
		t.Fatalf("after the portal range changed: %d checks, unit valid %v; want 2 checks and a problem", c.Checked(), units[0].Valid())
	}
}

func TestCacheChecksCrossUnitRulesOverUnchangedUnitsToo(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", service("a", 30001))
	writeUnit(t, dir, "b.cue", service("b", 30002))
	var c Cache
	loadBoth(t, &c, dir)

	// b now takes a's port: a, unchanged and from the cache, is wrong too.
	writeUnit(t, dir, "b.cue", service("b", 30001))
	units := loadBoth(t, &c, dir)
	if units[0].Valid() || units[1].Valid() {
		t.Fatalf("both units should have the externalPort conflict: %+v", units)
	}
	// And when b gives it back, a's cached copy has not kept the problem.
	writeUnit(t, dir, "b.cue", service("b", 30002))
	units = loadBoth(t, &c, dir)
	if !units[0].Valid() || !units[1].Valid() {
		t.Fatalf("both units should be valid again: %+v", units)
	}
	if n := c.Checked(); n != 4 {
		t.Fatalf("checked %d units, want 4 (two, then b twice)", n)
	}
}

func TestCacheHoldsOnlyTheUnitsPresent(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", service("a", 30001))
	writeUnit(t, dir, "b.cue", service("b", 30002))
	var c Cache
	loadBoth(t, &c, dir)
	if err := os.Remove(filepath.Join(dir, "b.cue")); err != nil {
		t.Fatal(err)
	}
	loadBoth(t, &c, dir)
	if _, ok := c.units["b.cue"]; ok || len(c.units) != 1 {
		t.Fatalf("the cache holds %d units after b was removed, want a alone", len(c.units))
	}
	// b coming back with the same bytes is checked again.
	writeUnit(t, dir, "b.cue", service("b", 30002))
	loadBoth(t, &c, dir)
	if n := c.Checked(); n != 3 {
		t.Fatalf("checked %d units, want 3", n)
	}
}

// TestCheckingInParallelGivesWhatCheckingInSequenceGives runs the checks on
// many workers at once (go test -race looks for shared CUE state), each
// replacing its Checker every three units, and compares every unit,
// problems in order, with one worker's result on one Checker.
func TestCheckingInParallelGivesWhatCheckingInSequenceGives(t *testing.T) {
	dir := t.TempDir()
	for i := range 60 {
		var content string
		switch i % 4 {
		case 0:
			content = fmt.Sprintf(benchUnit, i, 30000+i)
		case 1: // problems of the schema, several per unit
			content = fmt.Sprintf("pods: \"p%d\": {replicas: -1, containers: app: {imagee: \"x\", ports: [{containerPort: 0}]}}\n", i)
		case 2: // a syntax error
			content = "pods: {\n"
		case 3: // cross-unit: every one of these takes the same port
			content = service(fmt.Sprint("s", i), 31000)
		}
		writeUnit(t, dir, fmt.Sprintf("u%02d.cue", i), content)
	}
	var f finder
	if err := f.find(dir, "."); err != nil {
		t.Fatal(err)
	}
	groups := groupSources(f.sources)
	all := make([]int, len(groups))
	for i := range all {
		all[i] = i
	}
	ctx := context.Background()
	seq := make([]*Unit, len(groups))
	if err := checkAll(ctx, groups, all, seq, cacheOpts, 1, len(all), nil); err != nil {
		t.Fatal(err)
	}
	var kept keptChecker // the first worker's Checker goes on to the next round
	for range 3 {
		par := make([]*Unit, len(groups))
		if err := checkAll(ctx, groups, all, par, cacheOpts, 8, 3, &kept); err != nil {
			t.Fatal(err)
		}
		par, seq := withoutPlaces(par), withoutPlaces(seq)
		for i := range seq {
			if !reflect.DeepEqual(par[i], seq[i]) {
				t.Fatalf("unit %s in parallel:\n%+v\nin sequence:\n%+v", seq[i].ID, par[i], seq[i])
			}
		}
	}
	problems := 0
	for _, u := range seq {
		problems += len(u.Problems)
	}
	if problems < 30 {
		t.Fatalf("only %d problems in all: the invalid units did not fail as meant", problems)
	}
}

package kube

import (
	"bytes"
	"context"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/bench"
)

// TestExport_writes_what_sigs_yaml_writes_in_the_units_order holds
// Export, which skips sigs.k8s.io/yaml's JSON text and encodes units in
// parallel, to that library's bytes (status cut), written one object
// after the other, for the examples, the fixture that uses every field
// and the benchmark's units.
func TestExport_writes_what_sigs_yaml_writes_in_the_units_order(t *testing.T) {
	gen := t.TempDir()
	if err := bench.Write(gen, 20); err != nil {
		t.Fatal(err)
	}
	units, err := manifests.Load(context.Background(), []string{"../examples", "testdata/every.cue", gen},
		manifests.Options{AllowedHostPaths: []string{"/srv"}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var serial bytes.Buffer
	for _, u := range units {
		if !u.Valid() {
			t.Fatalf("%s: %v", u.ID, u.Problems)
		}
		for _, o := range Convert(u) {
			got, err := marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			want, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			if i := bytes.LastIndex(want, []byte("\nstatus:")); i >= 0 {
				want = want[:i+1]
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s:\n%s\nsigs.k8s.io/yaml writes\n%s", describe(o.Object), got, want)
			}
			if n > 0 {
				serial.WriteString("---\n")
			}
			for _, note := range o.Notes {
				serial.WriteString("# " + note + "\n")
			}
			serial.Write(want)
			n++
		}
	}
	var got bytes.Buffer
	if err := Export(&got, units); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), serial.Bytes()) {
		t.Errorf("Export writes\n%s\none object after the other:\n%s", got.Bytes(), serial.Bytes())
	}
	if n < 50 {
		t.Errorf("compared %d objects, want the examples', the fixture's and 20 units' (at least 50)", n)
	}
}

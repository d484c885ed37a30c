package kube

import (
	"bytes"
	"context"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/bench"
)

// TestMarshal_writes_what_sigs_yaml_writes holds marshal, which skips
// sigs.k8s.io/yaml's JSON text, to that library's bytes (status cut) for
// every object of the examples, the fixture that uses every field and the
// benchmark's units.
func TestMarshal_writes_what_sigs_yaml_writes(t *testing.T) {
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
			n++
		}
	}
	if n < 50 {
		t.Errorf("compared %d objects, want the examples', the fixture's and 20 units' (at least 50)", n)
	}
}

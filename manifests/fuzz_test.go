package manifests

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cuelet/cuelet/schema"
)

// perInput bounds the time one input may take: CUE has no way to stop an
// evaluation, so a hang shows as this watchdog firing.
const perInput = 10 * time.Second

// FuzzLoadUnit checks arbitrary bytes as one .cue file the way Load does
// (checkUnit, then the cross-unit rules): it must never panic nor hang,
// and a unit is either valid or has problems with a position in the file.
// One Checker serves the whole run, as compiling the schema for every
// input would leave little time for fuzzing.
func FuzzLoadUnit(f *testing.F) {
	seeds, _ := filepath.Glob("examples/*.cue")
	more, _ := filepath.Glob("examples/*/*.cue")
	seeds = append(seeds, more...)
	if len(seeds) == 0 {
		// The examples are the corpus's seeds: finding none means they moved.
		f.Fatal("no seed units under examples/")
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("pods: web: {replica: 2, containers: app: {}}\n"))
	f.Add([]byte("services: web: {selector: app: \"web\", endpoints: [\"a:1\"], ports: []}\n"))
	f.Add([]byte("pods: web: containers: app: {image: \"x\", readinessProbe: {exec: command: [\"true\"], httpGet: port: 80}}\n"))
	f.Add([]byte("package x\n\nimport \"strings\"\n\npods: [for i in [1] {strings.ToUpper(\"a\")}]\n"))

	c, err := schema.NewChecker()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := group{id: "unit.cue", sources: []source{{display: "unit.cue", dir: ".", data: data}}}
		done := make(chan *Unit, 1)
		go func() {
			u := checkUnit(c, g, Options{})
			CheckCrossUnit([]*Unit{u})
			done <- u
		}()
		var u *Unit
		select {
		case u = <-done:
		case <-time.After(perInput):
			t.Fatalf("checking took longer than %v", perInput)
		}
		for _, p := range u.Problems {
			if p.File != "unit.cue" || p.Line < 1 || p.Column < 1 || p.Message == "" {
				t.Errorf("problem without a place in the file: %+v", p)
			}
		}
		if !u.Valid() && (u.Pods != nil || u.Services != nil) {
			t.Errorf("invalid unit with pods or services: %+v", u)
		}
	})
}

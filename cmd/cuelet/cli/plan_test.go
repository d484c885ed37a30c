package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

// A plan with an action of every kind, as agent.Plan gives them (the
// pipeline itself runs against podman in plan_e2e_test.go).
func samplePlan() *agent.PlanResult {
	return &agent.PlanResult{
		Actions: []agent.PlanAction{
			{Line: "+ pod api", Action: "create", Object: "pod", Name: "api", Unit: "api.cue"},
			{
				Line: "~ pod web (image changed, env changed)", Action: "recreate", Object: "pod", Name: "web", Unit: "web.cue",
				Reasons: []string{"image changed", "env changed"},
				Changes: []reconcile.Change{
					{Field: "containers.app.image", Old: "busybox:1", New: "busybox:2"},
					{Field: "containers.app.env.GREETING", Old: "hello", New: nil},
					{Field: "containers.app.env.MODE", Old: nil, New: "fast"},
				},
			},
			{
				Line: "~ pod web-1 (container log stopped)", Action: "start", Object: "pod", Name: "web-1", Unit: "web.cue",
				Reasons: []string{"container log stopped"},
				Changes: []reconcile.Change{{Field: "containers.log.state", Old: "stopped", New: "running"}},
			},
			{Line: "- pod old", Action: "remove", Object: "pod", Name: "old", Unit: "old.cue"},
			{Line: "! pod db (conflict: not managed by cuelet)", Action: "conflict", Object: "pod", Name: "db", Unit: "db.cue", Reasons: []string{"not managed by cuelet"}},
			{Line: "+ service api 10.96.0.21:8080", Action: "create", Object: "service", Name: "api", Unit: "api.cue", Portal: "10.96.0.21:8080"},
			{
				Line: "~ service web (portal 10.96.0.20 → 10.96.0.22, selector changed)", Action: "update", Object: "service", Name: "web", Unit: "web.cue",
				Reasons: []string{"portal 10.96.0.20 → 10.96.0.22", "selector changed"},
				Changes: []reconcile.Change{
					{Field: "portal", Old: "10.96.0.20", New: "10.96.0.22"},
					{Field: "selector.app", Old: "web", New: "web2"},
				},
			},
			{Line: "- service gone", Action: "remove", Object: "service", Name: "gone", Unit: "old.cue"},
		},
		Problems: []manifests.Problem{{File: "bad.cue", Line: 1, Column: 36, Path: "pods.bad.containers.app.image", Message: "image must not be empty"}},
	}
}

// The text plan is one action a line, each ~ line followed by its fields,
// old → new; --json gives the same as objects, with the problems as
// validate --json gives them. CUELET_UPDATE_GOLDEN=1 rewrites the files.
func TestPlan_text_and_json_match_their_golden_files(t *testing.T) {
	var text, js bytes.Buffer
	printPlan(&text, samplePlan())
	if err := printPlanJSON(&js, samplePlan()); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"plan.txt": text.Bytes(), "plan.json": js.Bytes()} {
		path := filepath.Join("testdata", "plan", name)
		if os.Getenv("CUELET_UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs:\n%s\nwant:\n%s", name, got, want)
		}
	}
}

// A plan with nothing to do is an empty text and, in JSON, empty lists,
// never null, so that a script can count.
func TestPlan_in_sync_is_empty_lists_in_json(t *testing.T) {
	var js bytes.Buffer
	if err := printPlanJSON(&js, &agent.PlanResult{Actions: []agent.PlanAction{}, Problems: []manifests.Problem{}}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"actions\": [],\n  \"problems\": []\n}\n"; js.String() != want {
		t.Errorf("json = %q, want %q", js.String(), want)
	}
}

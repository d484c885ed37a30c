package cli_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

const planUnit = `
pods: web: {
	labels: app: "web"
	containers: app: {
		image: %q
		command: ["sleep", %q]
		env: %s
	}
}
services: web: {
	selector: %s
	ports: [{port: 80}]
}
`

// After apply, a change of a pod and of a service shows in `cuelet plan`
// field by field, old → new, under each ~ line, and in `plan --json` as
// objects with old and new values; against a real podman (podmantest),
// with the node of the services tests (root; skips without, unless CI).
func TestPlan_says_what_changes_field_by_field_against_podman(t *testing.T) {
	n := newSvcNode(t, agent.ProxyUserspace, true)
	n.write("web.cue", fmt.Sprintf(planUnit, podmantest.Image, "3600", `{GREETING: "hello", OLD: "x"}`, `{app: "web"}`))
	if out, errOut, code := n.cuelet("apply"); code != 0 {
		t.Fatalf("apply exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	n.write("web.cue", fmt.Sprintf(planUnit, podmantest.Image, "7200", `{GREETING: "hi", MODE: "fast"}`, `{app: "web", tier: "front"}`))

	out, errOut, code := n.cuelet("plan")
	want := `~ pod web (command changed, env changed)
    containers.app.command: ["sleep","3600"] → ["sleep","7200"]
    containers.app.env.GREETING: "hello" → "hi"
    containers.app.env.MODE: <none> → "fast"
    containers.app.env.OLD: "x" → <none>
~ service web (selector changed)
    selector.tier: <none> → "front"
`
	if code != 2 || out != want {
		t.Errorf("plan exited %d, want 2; stdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
	}

	out, errOut, code = n.cuelet("plan", "--json")
	if code != 2 {
		t.Errorf("plan --json exited %d, want 2\nstderr:\n%s", code, errOut)
	}
	var got struct {
		Actions []struct {
			Action, Object, Name, Unit string
			Reasons                    []string
			Changes                    []struct {
				Field    string
				Old, New any
			}
		}
		Problems []any
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	if len(got.Actions) != 2 || got.Problems == nil || len(got.Problems) != 0 {
		t.Fatalf("plan --json: %d actions, problems %v; want 2 and []\n%s", len(got.Actions), got.Problems, out)
	}
	pod, svc := got.Actions[0], got.Actions[1]
	if pod.Action != "recreate" || pod.Object != "pod" || pod.Name != "web" || pod.Unit != "web.cue" || len(pod.Changes) != 4 {
		t.Errorf("pod action %+v", pod)
	} else if c := pod.Changes[0]; c.Field != "containers.app.command" || fmt.Sprint(c.Old) != "[sleep 3600]" || fmt.Sprint(c.New) != "[sleep 7200]" {
		t.Errorf("pod change %+v, want the command old and new", c)
	} else if c := pod.Changes[2]; c.Field != "containers.app.env.MODE" || c.Old != nil || c.New != "fast" {
		t.Errorf("pod change %+v, want MODE null → fast", c)
	}
	if svc.Action != "update" || svc.Object != "service" || len(svc.Changes) != 1 || svc.Changes[0].Field != "selector.tier" || svc.Changes[0].New != "front" {
		t.Errorf("service action %+v", svc)
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent"
	"github.com/cuelet/cuelet/agent/agenttest"
	"github.com/cuelet/cuelet/manifests"
	portalstate "github.com/cuelet/cuelet/netproxy/portal"
	"github.com/cuelet/cuelet/netproxy/testenv"
)

func TestDroppedEditedAndDeletedFilesTakeEffectWithin2s(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	// Another unit stays throughout: removing the last unit would trip the
	// empty-directory guard instead.
	n.Write("keep.cue", podUnit("keep", 1, "1"))
	startSynced(t, n, "keep")
	keep := n.State("keep")

	at := n.Write("web.cue", podUnit("web", 1, "1"))
	spec2s(t, "drop", at,
		waitEvent(t, n, at, changeWithin, agenttest.PodEvent("web", "create")),
		waitEvent(t, n, at, changeWithin, agenttest.ContainerEvent("web-app", "start")))
	waitRunning(t, n, changeWithin, "web")
	first := n.State("web")

	at = n.Write("web.cue", podUnit("web", 1, "2"))
	spec2s(t, "edit", at,
		waitEvent(t, n, at, changeWithin, about("web")),
		waitEvent(t, n, at, changeWithin, agenttest.ContainerEvent("web-app", "start")))
	waitRunning(t, n, changeWithin, "web")
	if d := first.Diff(n.State("web")); len(d) == 0 {
		t.Error("edit: web was not recreated")
	}
	out, err := n.Podman.Run(ctxFor(t, time.Minute), "exec", "web-app", "sh", "-c", "echo $VERSION")
	if err != nil || strings.TrimSpace(out) != "2" {
		t.Errorf("edit: VERSION in the new container is %q (%v), want 2", out, err)
	}

	at = n.Remove("web.cue")
	spec2s(t, "delete", at,
		waitEvent(t, n, at, changeWithin, about("web")),
		waitEvent(t, n, at, changeWithin, agenttest.PodEvent("web", "remove")))
	testenv.Eventually(t, changeWithin, func() error {
		if _, ok := n.Pods()["web"]; ok {
			return os.ErrExist
		}
		return nil
	})

	if d := keep.Diff(n.State("keep")); len(d) > 0 {
		t.Errorf("keep was touched: %v", d)
	}
}

func TestGitSyncSymlinkSwapsAreFollowed(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	// git-sync's layout: worktrees in <root>/.worktrees/<hash>, published
	// by a relative symlink <root>/<link> that is swapped atomically
	// (symlink tmp-link, rename over the link); the old worktree is
	// deleted right after.
	root := filepath.Join(n.Dir, "git")
	link := filepath.Join(root, "manifests")
	revision := func(hash string, files map[string]string) {
		t.Helper()
		dir := filepath.Join(root, ".worktrees", hash)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish := func(hash, old string) time.Time {
		t.Helper()
		at := time.Now()
		tmp := filepath.Join(root, "tmp-link")
		if err := os.Symlink(filepath.Join(".worktrees", hash), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(root, ".worktrees", old)); err != nil {
				t.Fatal(err)
			}
		}
		return at
	}
	revision("aaa", map[string]string{"web.cue": podUnit("web", 1, "1")})
	publish("aaa", "")
	n.Manifests = link
	a, _ := startSynced(t, n, "web")
	web := n.State("web")

	// Revision 2 adds api and changes web.
	revision("bbb", map[string]string{"web.cue": podUnit("web", 1, "2"), "api.cue": podUnit("api", 1, "1")})
	at := publish("bbb", "aaa")
	spec2s(t, "swap to bbb", at,
		waitEvent(t, n, at, changeWithin, agenttest.AnyOf(about("web"), about("api"))),
		waitEvent(t, n, at, changeWithin, agenttest.ContainerEvent("api-app", "start")))
	waitEvent(t, n, at, changeWithin, agenttest.ContainerEvent("web-app", "start"))
	waitRunning(t, n, changeWithin, "web", "api")
	if d := web.Diff(n.State("web")); len(d) == 0 {
		t.Error("web was not recreated for revision bbb")
	}
	api := n.State("api")

	// Revision 3 drops web; the watches must have survived the first swap
	// and the deletion of the worktree they were on.
	revision("ccc", map[string]string{"api.cue": podUnit("api", 1, "1")})
	at = publish("ccc", "bbb")
	spec2s(t, "swap to ccc", at,
		waitEvent(t, n, at, changeWithin, about("web")),
		waitEvent(t, n, at, changeWithin, agenttest.PodEvent("web", "remove")))
	if d := api.Diff(n.State("api")); len(d) > 0 {
		t.Errorf("api was touched by revision ccc: %v", d)
	}
	rep := a.WaitSynced(changeWithin, at, nil)
	if len(rep.Errors) > 0 {
		t.Errorf("errors after the swap: %v", rep.Errors)
	}
}

func TestInvalidEditKeepsPodsAndStatusShowsTheError(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	n.Write("web.cue", podUnit("web", 2, "1"))
	a, _ := startSynced(t, n, "web", "web-1")
	before := n.State("web", "web-1")

	at := n.Write("web.cue", strings.Replace(podUnit("web", 2, "2"), "replicas: 2", "replicas: 200", 1))
	problem := regexp.MustCompile(`^web\.cue:2:\d+: pods\.web\.replicas: .*200`)
	a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		u, ok := unit(rep, "web.cue")
		if !ok || u.Valid || len(u.Problems) == 0 {
			return fmt.Errorf("web.cue not reported invalid yet: %+v", u)
		}
		if !problem.MatchString(u.Problems[0].String()) {
			t.Fatalf("problem %q does not match %s", u.Problems[0], problem)
		}
		if !u.LastGood {
			t.Errorf("web.cue: lastGood not set")
		}
		return nil
	})
	stdout, stderr, code := n.CLI("status", "--run-dir", n.RunDir)
	t.Logf("cuelet status:\n%s", stdout)
	if code != 0 || !strings.Contains(stdout, "invalid (last good kept)") || !regexp.MustCompile(`(?m)web\.cue:2:\d+: pods\.web\.replicas: `).MatchString(stdout) {
		t.Errorf("cuelet status exit %d, stderr %q: the error line is missing", code, stderr)
	}

	// Another full pass (SIGHUP) still touches nothing.
	hup := time.Now()
	a.Signal(syscall.SIGHUP)
	a.WaitSynced(changeWithin, hup, nil)
	if d := before.Diff(n.State("web", "web-1")); len(d) > 0 {
		t.Errorf("pods of the invalid unit changed: %v", d)
	}
	if evs := n.Events.Since(at, agenttest.AnyOf(about("web"), about("web-1"))); len(evs) > 0 {
		t.Errorf("podman events for the kept pods: %v", evs)
	}

	// Fixed again: the change goes through.
	at = n.Write("web.cue", podUnit("web", 2, "2"))
	waitEvent(t, n, at, changeWithin, agenttest.ContainerEvent("web-app", "start"))
}

func TestRemovedManifestDirectoryDeletesNothing(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	n.Write("web.cue", podUnit("web", 1, "1"))
	a, _ := startSynced(t, n, "web")
	before := n.State("web")

	at := time.Now()
	if err := os.RemoveAll(n.Manifests); err != nil {
		t.Fatal(err)
	}
	a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		if len(rep.Errors) == 0 || !strings.Contains(strings.Join(rep.Errors.Strings(), "\n"), "read manifests") {
			return fmt.Errorf("no error reported yet: %v", rep.Errors)
		}
		if len(rep.Pods) != 1 {
			t.Errorf("status lost the pods while the folder is gone: %+v", rep.Pods)
		}
		return nil
	})
	stdout, _, _ := n.CLI("status", "--run-dir", n.RunDir)
	t.Logf("cuelet status with the folder gone:\n%s", stdout)
	if !strings.Contains(stdout, "error: read manifests: stat ") || strings.Count(stdout, "read manifests") != 1 {
		t.Errorf("cuelet status does not show the error once")
	}

	// The folder back, but empty: the guard holds too.
	empty := time.Now()
	if err := os.Mkdir(n.Manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	a.WaitSynced(changeWithin, empty, func(rep *agent.Report) error {
		if len(rep.Errors) == 0 || strings.Contains(strings.Join(rep.Errors.Strings(), "\n"), "read manifests") {
			return fmt.Errorf("want the empty-directory guard's error, have %v", rep.Errors)
		}
		t.Logf("empty folder: %v", rep.Errors)
		return nil
	})

	// And the file back: clean, nothing restarted.
	back := n.Write("web.cue", podUnit("web", 1, "1"))
	a.WaitSynced(changeWithin, back, func(rep *agent.Report) error {
		if len(rep.Errors) > 0 {
			return fmt.Errorf("errors: %v", rep.Errors)
		}
		return nil
	})
	if d := before.Diff(n.State("web")); len(d) > 0 {
		t.Errorf("web changed: %v", d)
	}
	if evs := n.Events.Since(at, about("web")); len(evs) > 0 {
		t.Errorf("podman events for web: %v", evs)
	}
}

// SPEC §3.3 and §9: a folder emptied or removed frees nothing. A service
// keeps its portal allocation, its address and its listener, and keeps
// answering, however many passes see the folder so; with the file back,
// it has the same portal.
func TestAgent_keeps_services_and_portals_when_the_folder_is_emptied_or_removed(t *testing.T) {
	eachProxyMode(t, testAgent_keeps_services_and_portals_when_the_folder_is_emptied_or_removed)
}

func testAgent_keeps_services_and_portals_when_the_folder_is_emptied_or_removed(t *testing.T, mode agent.ProxyMode) {
	n := newNode(t, mode)
	backend := agenttest.HelloServer(t)
	n.Write("db.cue", endpointService("db", backend, 5432))
	a := n.Start(agenttest.Options{})
	rep := a.WaitSynced(startWithin, time.Time{}, nil)
	db, err := portal(rep, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(db); err != nil {
		t.Fatal(err)
	}
	allocated := func(while string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(n.StateDir, portalstate.StateFile))
		if err != nil {
			t.Fatal(err)
		}
		var state struct{ Portals map[string]string }
		if err := json.Unmarshal(b, &state); err != nil {
			t.Fatal(err)
		}
		if host, _, _ := net.SplitHostPort(db); state.Portals["db"] != host {
			t.Errorf("with %s, the allocations are %v; want db at %s", while, state.Portals, host)
		}
	}
	guarded := func(want string) func(*agent.Report) error {
		return func(rep *agent.Report) error {
			for _, err := range rep.Errors {
				if strings.Contains(err.Error(), want) {
					return nil
				}
			}
			return fmt.Errorf("want an error with %q, have %v", want, rep.Errors)
		}
	}

	at := n.Remove("db.cue")
	a.WaitSynced(changeWithin, at, guarded("holds no unit"))
	keepsServing(t, db, "the folder emptied")
	a.Signal(syscall.SIGHUP) // another pass over the empty folder
	a.WaitSynced(changeWithin, time.Now(), guarded("holds no unit"))
	keepsServing(t, db, "the folder emptied, a pass later")
	allocated("the folder emptied")

	at = time.Now()
	if err := os.RemoveAll(n.Manifests); err != nil {
		t.Fatal(err)
	}
	a.WaitSynced(changeWithin, at, guarded("read manifests"))
	keepsServing(t, db, "the folder removed")
	allocated("the folder removed")

	if err := os.Mkdir(n.Manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	at = n.Write("db.cue", endpointService("db", backend, 5432))
	rep = a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		if len(rep.Errors) > 0 {
			return fmt.Errorf("errors: %v", rep.Errors)
		}
		return nil
	})
	if again, err := portal(rep, "db"); err != nil || again != db {
		t.Errorf("db with its file back: %q, %v; want %s", again, err, db)
	}
}

// SPEC §9: an invalid unit is logged when it becomes invalid or its
// problems change, one event per problem line with the fields unit and
// error, and not again on every pass.
func TestAgent_logs_each_problem_of_an_invalid_unit_once_per_change(t *testing.T) {
	t.Parallel()
	n := agenttest.NewNode(t)
	n.Write("bad.cue", "pods: web: {replicas: 200, restartPolicy: \"Sometimes\", containers: app: image: \"x\"}\n")
	a := n.Start(agenttest.Options{})
	rep := a.WaitSynced(startWithin, time.Time{}, nil)
	for range 2 { // passes that change nothing log nothing
		at := time.Now()
		a.Signal(syscall.SIGHUP)
		rep = a.WaitSynced(changeWithin, at, nil)
	}
	bad, _ := unit(rep, "bad.cue")
	if len(bad.Problems) != 2 {
		t.Fatalf("bad.cue: %+v; want two problems", bad)
	}
	type event struct {
		Level, Unit, Error, Message string
	}
	events := func() []event {
		var out []event
		for _, line := range strings.Split(a.Log(), "\n") {
			var e event
			if json.Unmarshal([]byte(line), &e) == nil && e.Unit == "bad.cue" {
				out = append(out, e)
			}
		}
		return out
	}
	errorsOf := func(evs []event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Error)
		}
		return out
	}
	lines := func(ps []manifests.Problem) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.String())
		}
		return out
	}
	if got := errorsOf(events()); !slices.Equal(got, lines(bad.Problems)) {
		t.Errorf("logged for bad.cue after three passes:\n%q\nwant each problem once:\n%q", got, lines(bad.Problems))
	}

	// One problem fixed: the unit's problems changed, logged once more.
	at := n.Write("bad.cue", "pods: web: {replicas: 200, containers: app: image: \"x\"}\n")
	rep = a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		if u, _ := unit(rep, "bad.cue"); len(u.Problems) != 1 {
			return fmt.Errorf("bad.cue: %+v", u)
		}
		return nil
	})
	bad, _ = unit(rep, "bad.cue")
	if got := errorsOf(events()); len(got) != 3 || got[2] != bad.Problems[0].String() {
		t.Errorf("logged for bad.cue after the edit:\n%q\nwant the new problem once more: %q", got, bad.Problems[0])
	}

	// Fixed: one event says so, without an error.
	at = n.Write("bad.cue", "pods: web: {replicas: 0, containers: app: image: \"x\"}\n")
	a.WaitSynced(changeWithin, at, func(rep *agent.Report) error {
		if u, _ := unit(rep, "bad.cue"); !u.Valid {
			return fmt.Errorf("bad.cue: %+v", u)
		}
		return nil
	})
	if evs := events(); len(evs) != 4 || evs[3].Error != "" || evs[3].Level != "info" {
		t.Errorf("logged for bad.cue once valid: %+v; want one more event, without error", evs)
	}
}

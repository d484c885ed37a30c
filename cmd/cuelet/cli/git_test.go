package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
	"github.com/cuelet/cuelet/manifests/gitsource/gittest"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// node a's units: a pod with a files volume and a service with an external
// port, so that every kind of object is in the export, and a package unit.
var gitNodeA = map[string]string{
	"nodes/a/web.cue": `pods: web: {
	labels: app: "web"
	containers: app: {
		image: "localhost/cuelet-busybox:latest"
		command: ["httpd", "-f", "-p", "8080"]
		ports: [{name: "http", containerPort: 8080}]
	}
	volumes: conf: files: "a.conf": "x\n"
}
services: web: {
	selector: app: "web"
	ports: [{name: "http", port: 80, targetPort: "http", externalPort: 30080}]
}
`,
	// A package unit in the folder itself: its ID is "<folder>:<package>".
	"nodes/a/cache.cue": `package node

pods: cache: containers: app: image: "localhost/cuelet-busybox:latest"
`,
	"nodes/b/db.cue": `pods: db: containers: app: image: "localhost/cuelet-busybox:latest"
`,
}

// TestExport_reads_a_branch_of_a_git_repository_as_validate_does is CI
// exporting what a branch holds (SPEC §12): --git-url, --git-ref and
// --git-path give what export of the same folder checked out gives, an
// invalid commit gives validate's lines with repository paths and nothing
// on stdout, and the one-shot fetch leaves nothing behind.
func TestExport_reads_a_branch_of_a_git_repository_as_validate_does(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the one-shot fetch goes
	up := gittest.New(t, t.TempDir())
	up.Commit(t, "two nodes", gitNodeA)
	up.Git(t, "push", "-q", "origin", "HEAD:refs/heads/stable")

	// The peer: export of the folder as the work tree has it, from its
	// root, where CI would run it.
	t.Chdir(up.Work)
	want, stderr, code := cuelet(t, "export", "nodes/a")
	if code != 0 || stderr != "" || !strings.Contains(want, "cuelet.io/unit: nodes/a:node") {
		t.Fatalf("export of the work tree: exit %d\n%s\n%s", code, stderr, want)
	}
	got, stderr, code := cuelet(t, "export", "--git-url", up.Bare, "--git-path", "nodes/a")
	if code != 0 || stderr != "" {
		t.Fatalf("export --git-url: exit %d, stderr:\n%s", code, stderr)
	}
	if got != want {
		t.Errorf("export --git-url --git-path nodes/a:\n%s\nexport of the checked-out folder:\n%s", got, want)
	}

	// main moves on to an invalid commit; stable stays where it was.
	bad := map[string]string{"nodes/a/web.cue": "pods: web: {replicas: 200, containers: app: image: \"nginx\"}\n"}
	up.Commit(t, "too many", bad)
	out, stderr, code := cuelet(t, "export", "--git-url", "file://"+up.Bare, "--git-path", "nodes/a")
	if code != 1 || out != "" {
		t.Errorf("export of an invalid commit: exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if w := "nodes/a/web.cue:1:23: pods.web.replicas: 200 is above the maximum 100\n"; stderr != w {
		t.Errorf("export of an invalid commit says\n%swant\n%s", stderr, w)
	}
	_, vstderr, _ := cuelet(t, "validate", "--git-url", "file://"+up.Bare, "--git-path", "nodes/a")
	if vstderr != stderr {
		t.Errorf("export says\n%svalidate says\n%s", stderr, vstderr)
	}
	got, stderr, code = cuelet(t, "export", "--git-url", "file://"+up.Bare, "--git-ref", "stable", "--git-path", "nodes/a")
	if code != 0 || got != want {
		t.Errorf("export --git-ref stable: exit %d\n%s\n%s\nwant\n%s", code, stderr, got, want)
	}

	// The flags are checked as validate checks them.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--git-url", up.Bare, "--git-ref", "nope"}, `ref "nope" not found on the remote`},
		{[]string{"--git-url", up.Bare, "--manifests", up.Work}, "--git-url and --manifests exclude each other"},
		{[]string{"--git-url", up.Bare, up.Work}, "--git-url takes no paths"},
	} {
		out, stderr, code := cuelet(t, append([]string{"export"}, c.args...)...)
		if code != 1 || out != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("export %q: exit %d, stdout %q, stderr %q; want 1, nothing, %q", c.args, code, out, stderr, c.want)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the one-shot fetches left %d entries in TMPDIR: %v", len(left), left)
	}
}

// A CI job that validates a branch must fail when the remote accepts the
// connection and never answers, not wait for the job's own limit.
func TestValidate_with_git_fails_when_the_remote_never_answers(t *testing.T) {
	remote := gittest.SilentRemote(t)
	defer cli.SetFetchTimeout(200 * time.Millisecond)()
	type result struct {
		stderr string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, stderr, code := cuelet(t, "validate", "--git-url", remote)
		done <- result{stderr, code}
	}()
	select {
	case r := <-done:
		if r.code == 0 || !strings.Contains(r.stderr, "no answer from the remote within 200ms") {
			t.Errorf("validate against a remote that never answers: exit %d, stderr %q; want a failure naming the deadline", r.code, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("validate against a remote that never answers still runs after 30 s; want it failed after its 200ms deadline")
	}
}

// cuelet runs the command line in-process.
func cuelet(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = cli.Run(context.Background(), &cli.Env{Stdout: &o, Stderr: &e, Getenv: os.Getenv}, args)
	return o.String(), e.String(), code
}

// TestPlan_with_git_names_files_as_validate_does: plan reads --git-url
// through the agent, which names files relative to --git-path; a CI log
// must point at the same file whichever command it ran. Against a real
// podman (podmantest), which plan needs before it validates.
func TestPlan_with_git_names_files_as_validate_does(t *testing.T) {
	p := podmantest.New(t)
	up := gittest.New(t, t.TempDir())
	up.Commit(t, "too many", map[string]string{"nodes/a/web.cue": "pods: web: {replicas: 200, containers: app: image: \"nginx\"}\n"})
	git := []string{"--git-url", up.Bare, "--git-path", "nodes/a"}
	_, want, code := cuelet(t, append([]string{"validate"}, git...)...)
	if code != 1 || !strings.HasPrefix(want, "nodes/a/web.cue:") {
		t.Fatalf("validate: exit %d, stderr %q", code, want)
	}
	agentFlags := []string{"--podman-url", p.URL, "--state-dir", t.TempDir(), "--run-dir", t.TempDir()}
	_, got, code := cuelet(t, append(append([]string{"plan"}, git...), agentFlags...)...)
	if code != 1 || got != want {
		t.Errorf("plan: exit %d, stderr\n%swant 1 and validate's\n%s", code, got, want)
	}
	out, _, _ := cuelet(t, append(append([]string{"plan", "--json"}, git...), agentFlags...)...)
	if !strings.Contains(out, `"file": "nodes/a/web.cue"`) {
		t.Errorf("plan --json names the file otherwise:\n%s", out)
	}
}

// TestPlan_with_git_names_units_by_their_path_in_the_repository: plan
// --json with --git-path names each action's unit as export and validate
// do, and as the agent's status does (agent's
// TestNode_with_a_git_path_reports_units_by_their_path_in_the_repository),
// not by its place in the temporary checkout ("web.cue", ".:node").
func TestPlan_with_git_names_units_by_their_path_in_the_repository(t *testing.T) {
	p := podmantest.New(t)
	up := gittest.New(t, t.TempDir())
	up.Commit(t, "two nodes", gitNodeA)
	for _, c := range []struct {
		gitPath string
		want    []string // the units of the actions, sorted, once each
	}{
		{"nodes/a", []string{"nodes/a/web.cue", "nodes/a:node"}},
		{"", []string{"nodes/a/web.cue", "nodes/a:node", "nodes/b/db.cue"}},
	} {
		out, stderr, code := cuelet(t, "plan", "--json", "--git-url", up.Bare, "--git-path", c.gitPath,
			"--podman-url", p.URL, "--state-dir", t.TempDir(), "--run-dir", t.TempDir())
		if code != 2 {
			t.Fatalf("plan --git-path %q: exit %d, want 2 (changes pending)\n%s", c.gitPath, code, stderr)
		}
		var plan struct {
			Actions []struct{ Unit string }
		}
		if err := json.Unmarshal([]byte(out), &plan); err != nil {
			t.Fatalf("plan --json: %v\n%s", err, out)
		}
		var units []string
		for _, a := range plan.Actions {
			if !slices.Contains(units, a.Unit) {
				units = append(units, a.Unit)
			}
		}
		slices.Sort(units)
		if !slices.Equal(units, c.want) {
			t.Errorf("plan --json --git-path %q names the units %q, want %q", c.gitPath, units, c.want)
		}
	}
}

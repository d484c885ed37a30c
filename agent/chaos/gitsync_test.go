package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cuelet/cuelet/agent/agenttest"
)

// git-sync publishes each revision as a worktree <root>/.worktrees/<hash>
// behind a symlink <root>/<link> that it swaps atomically (symlink, rename
// over the link) and deletes the old worktree right after. Bursts of swaps
// (100 in 10 s) while the agent creates and removes the pods they bring:
// the agent must end on the last revision, with the pod that every
// revision holds unchanged (SPEC §2: symbolic links are followed; §3.6).
func TestChaos_git_sync_symlink_swaps_while_pods_are_created(t *testing.T) {
	t.Parallel()
	sc := campaign(t)
	f := newFault(fmt.Sprintf("git-sync symlink swap (%d in %s)", sc.swaps, sc.swapSpan))
	n := newNode(t)

	root := filepath.Join(n.Dir, "git")
	link := filepath.Join(root, "manifests")
	base := map[string][]byte{}
	for _, name := range []string{"store.cue", "echo.cue", "db.cue"} {
		b, err := os.ReadFile(filepath.Join(n.Manifests, name))
		if err != nil {
			t.Fatal(err)
		}
		base[name] = b
	}
	base["steady.cue"] = []byte(podUnit("1", "steady"))
	n.want["steady"] = []string{"side", "app"}

	// Revision i holds the base units, steady, and churn: 1 to 4 pods,
	// their version changing every fourth revision.
	churn := func(i int) []string {
		return []string{"c0", "c1", "c2", "c3"}[:1+i%4]
	}
	hashes := 0
	current := ""
	publish := func(i int) {
		t.Helper()
		hashes++
		hash := fmt.Sprintf("%040x", hashes)
		dir := filepath.Join(root, ".worktrees", hash)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{"churn.cue": []byte(podUnit(fmt.Sprint(i/4), churn(i)...))}
		for name, b := range base {
			files[name] = b
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(root, "tmp-link")
		if err := os.Symlink(filepath.Join(".worktrees", hash), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
		if current != "" {
			if err := os.RemoveAll(filepath.Join(root, ".worktrees", current)); err != nil {
				t.Fatal(err)
			}
		}
		current = hash
		for _, c := range []string{"c0", "c1", "c2", "c3"} {
			delete(n.want, c)
		}
		for _, c := range churn(i) {
			n.want[c] = []string{"side", "app"}
		}
	}
	publish(0)
	n.Manifests = link
	n.start()
	steady := n.State("steady", "store", "echo")

	rev := 0
	for burst := range sc.swapBursts {
		start := time.Now()
		every := sc.swapSpan / time.Duration(sc.swaps)
		for i := range sc.swaps {
			rev++
			publish(rev)
			f.inject()
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * every)))
		}
		took := time.Since(start)
		problems := n.check()
		changes := n.Events.Since(start, func(e agenttest.Event) bool {
			return e.Type == "pod" && (e.Action == "create" || e.Action == "remove")
		})
		t.Logf("burst %d: %d swaps in %v, ending on revision %d (churn %v); %d pods created or removed meanwhile and after",
			burst, sc.swaps, took.Round(time.Millisecond), rev, churn(rev), len(changes))
		if d := steady.Diff(n.State("steady", "store", "echo")); len(d) > 0 {
			p := fmt.Sprintf("burst %d: pods in every revision were touched: %v", burst, d)
			t.Error(p)
			problems = append(problems, p)
		}
		f.afterMany(sc.swaps, problems)
	}
}

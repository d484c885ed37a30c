package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// keepCue is the loader's rule in short: .cue files that are not hidden.
func keepCue(name string) bool {
	return strings.HasSuffix(name, ".cue") && !strings.HasPrefix(name, ".")
}

type kickCounter struct{ n atomic.Int32 }

func (k *kickCounter) kick() { k.n.Add(1) }

// startWatcher watches path and returns a counter of kicks.
func startWatcher(t *testing.T, path string) *kickCounter {
	t.Helper()
	w, err := NewWatcher(path, keepCue, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	k := &kickCounter{}
	go func() { w.Run(ctx, k.kick); close(done) }()
	t.Cleanup(func() { cancel(); <-done; w.Close() })
	return k
}

// expectKick runs change and waits for at least one new kick.
func expectKick(t *testing.T, k *kickCounter, what string, change func()) {
	t.Helper()
	before := k.n.Load()
	change()
	testenv.Eventually(t, 5*time.Second, testenv.True(what+": a kick", func() bool { return k.n.Load() != before }))
}

// expectNoKick runs change and checks that no kick follows. Absence can
// only be observed by waiting; 300 ms is far above inotify's latency.
func expectNoKick(t *testing.T, k *kickCounter, what string, change func()) {
	t.Helper()
	before := k.n.Load()
	change()
	time.Sleep(300 * time.Millisecond)
	if got := k.n.Load(); got != before {
		t.Fatalf("%s: %d kicks, want none", what, got-before)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatcher_file_dropped_edited_and_removed_kicks(t *testing.T) {
	dir := t.TempDir()
	k := startWatcher(t, dir)
	f := filepath.Join(dir, "web.cue")
	expectKick(t, k, "drop", func() { write(t, f, "pods: {}\n") })
	expectKick(t, k, "edit", func() { write(t, f, "pods: {}\nservices: {}\n") })
	expectKick(t, k, "remove", func() { os.Remove(f) })
}

func TestWatcher_editor_leftovers_do_not_kick(t *testing.T) {
	dir := t.TempDir()
	k := startWatcher(t, dir)
	expectNoKick(t, k, "swap file", func() { write(t, filepath.Join(dir, ".web.cue.swp"), "x") })
	expectNoKick(t, k, "backup", func() { write(t, filepath.Join(dir, "web.cue~"), "x") })
	expectNoKick(t, k, "other file", func() { write(t, filepath.Join(dir, "README.md"), "x") })
	expectNoKick(t, k, "hidden folder", func() { write(t, filepath.Join(dir, ".git", "x.cue"), "x") })
}

func TestWatcher_save_by_rename_kicks(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "web.cue")
	write(t, f, "pods: {}\n")
	k := startWatcher(t, dir)
	expectKick(t, k, "rename over", func() {
		tmp := filepath.Join(dir, ".web.cue.tmp123")
		write(t, tmp, "services: {}\n")
		if err := os.Rename(tmp, f); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWatcher_new_subfolder_is_followed(t *testing.T) {
	dir := t.TempDir()
	k := startWatcher(t, dir)
	sub := filepath.Join(dir, "team", "a")
	expectKick(t, k, "new folders", func() {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
	})
	// The watch on the new folder may be added just after the kick; wait
	// for it by writing until a kick comes.
	expectKick(t, k, "file in new subfolder", func() { write(t, filepath.Join(sub, "x.cue"), "pods: {}\n") })
	expectKick(t, k, "edit in new subfolder", func() { write(t, filepath.Join(sub, "x.cue"), "pods: {}\n\n") })
}

func TestWatcher_manifest_folder_appearing_later_is_followed(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "etc", "manifests")
	k := startWatcher(t, dir)
	expectKick(t, k, "folders created", func() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	})
	expectKick(t, k, "file in late folder", func() { write(t, filepath.Join(dir, "a.cue"), "pods: {}\n") })
	expectKick(t, k, "folder removed", func() { os.RemoveAll(dir) })
	expectKick(t, k, "folder recreated", func() { os.MkdirAll(dir, 0o755) })
	expectKick(t, k, "file in recreated folder", func() { write(t, filepath.Join(dir, "b.cue"), "pods: {}\n") })
}

func TestWatcher_git_sync_symlink_swap_is_followed(t *testing.T) {
	// git-sync's layout: root/current -> .worktrees/<rev>; the manifest
	// path goes through the link.
	root := t.TempDir()
	rev1 := filepath.Join(root, ".worktrees", "rev1")
	write(t, filepath.Join(rev1, "manifests", "a.cue"), "pods: {}\n")
	link := filepath.Join(root, "current")
	if err := os.Symlink(".worktrees/rev1", link); err != nil {
		t.Fatal(err)
	}
	k := startWatcher(t, filepath.Join(link, "manifests"))

	expectKick(t, k, "edit through link", func() { write(t, filepath.Join(rev1, "manifests", "a.cue"), "pods: {}\n\n") })

	rev2 := filepath.Join(root, ".worktrees", "rev2")
	write(t, filepath.Join(rev2, "manifests", "a.cue"), "services: {}\n")
	expectKick(t, k, "swap", func() {
		tmp := filepath.Join(root, "tmp-link")
		if err := os.Symlink(".worktrees/rev2", tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil { // mv -T
			t.Fatal(err)
		}
		os.RemoveAll(rev1) // git-sync removes the old worktree at once
	})
	expectKick(t, k, "edit in new revision", func() { write(t, filepath.Join(rev2, "manifests", "b.cue"), "pods: {}\n") })
}

package gitsource

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

func TestACommitThatChangesOneFileFetchesThatFileNotTheWholeTree(t *testing.T) {
	up := newUpstream(t)
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("unit-%02d.cue", i)] = fmt.Sprintf("pods: p%d: {}\n", i)
	}
	first := up.Commit(t, "fifty units", files)
	s := newSource(t, Config{URL: "file://" + up.Bare})
	mustSync(t, s, first)
	before := storedObjects(t, s)

	files["unit-07.cue"] = "pods: p7: {replicas: 2}\n"
	second := up.Commit(t, "one unit changed", files)
	mustSync(t, s, second)

	// The new commit, its root tree and the changed file's blob: the
	// 49 unchanged blobs are already here and must not come again.
	if got := storedObjects(t, s) - before; got > 3 {
		t.Fatalf("the fetch stored %d objects, want at most 3 (commit, tree, blob)", got)
	}
	wantFiles(t, s.ManifestDir(), files)
}

// storedObjects counts the objects in the repository's packs, each pack's
// own: an object fetched twice counts twice.
func storedObjects(t *testing.T, s *Source) int {
	t.Helper()
	idxs, err := filepath.Glob(filepath.Join(s.cfg.Dir, repoDir, "objects", "pack", "*.idx"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range idxs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		idx := idxfile.NewMemoryIndex()
		err = idxfile.NewDecoder(f).Decode(idx)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		c, err := idx.Count()
		if err != nil {
			t.Fatal(err)
		}
		n += int(c)
	}
	return n
}

func TestARepositoryDeletedBetweenSyncsIsMadeAnew(t *testing.T) {
	up := newUpstream(t)
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, up.Commit(t, "one", map[string]string{"web.cue": "a\n"}))
	// The source keeps the repository open between syncs: that must not
	// make it trust files someone removed.
	if err := os.RemoveAll(filepath.Join(s.cfg.Dir, repoDir)); err != nil {
		t.Fatal(err)
	}

	head := up.Commit(t, "two", map[string]string{"web.cue": "b\n"})
	mustSync(t, s, head)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "b\n"})
}

package gitsource

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestANewRevisionLinksTheFilesItSharesWithTheLiveOne(t *testing.T) {
	up := newUpstream(t)
	files := map[string]string{"web.cue": "a\n", "same.cue": "s\n", "sub/db.cue": "d\n", "run.sh": "#!/bin/sh\n"}
	first := up.Commit(t, "one", files)
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, first)
	before := map[string]uint64{}
	for name := range files {
		before[name] = inode(t, filepath.Join(s.ManifestDir(), name))
	}

	files["web.cue"] = "b\n"
	second := up.Commit(t, "two", files)
	mustSync(t, s, second)

	// The same tree as a checkout that writes every file: a source that
	// starts with this revision.
	wantFiles(t, s.ManifestDir(), files)
	fresh := newSource(t, Config{URL: up.Bare})
	mustSync(t, fresh, second)
	if got, want := tree(t, s.ManifestDir()), tree(t, fresh.ManifestDir()); !maps.Equal(got, want) {
		t.Errorf("the linked revision holds %v, a fresh checkout %v", got, want)
	}
	for name := range files {
		now := inode(t, filepath.Join(s.ManifestDir(), name))
		if shared := now == before[name]; shared != (name != "web.cue") {
			t.Errorf("%s: shares its inode with the old revision: %v, want %v", name, shared, name != "web.cue")
		}
	}
}

func TestTheLiveRevisionsFilesStayAsTheyAreWhenTheNextOneIsPublished(t *testing.T) {
	up := newUpstream(t)
	files := map[string]string{"web.cue": "a\n", "same.cue": "s\n"}
	first := up.Commit(t, "one", files)
	s := newSource(t, Config{URL: up.Bare})
	mustSync(t, s, first)
	// A reader in the middle of a pass holds the old revision's files
	// open while the next one is published and the old folder removed.
	open := map[string]*os.File{}
	for name := range files {
		f, err := os.Open(filepath.Join(s.ManifestDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		open[name] = f
	}

	second := up.Commit(t, "two", map[string]string{"web.cue": "b\n", "same.cue": "s\n"})
	mustSync(t, s, second)

	for name, f := range open {
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != files[name] {
			t.Errorf("%s of the old revision reads %q after the next was published, want %q", name, b, files[name])
		}
	}
}

func TestOnPublishComesAfterTheSwapAndBeforeTheOldFolderGoes(t *testing.T) {
	up := newUpstream(t)
	first := up.Commit(t, "one", map[string]string{"web.cue": "a\n"})
	s := newSource(t, Config{URL: up.Bare})
	var calls []Revision
	var problems []string
	s.OnPublish(func(rev Revision) {
		calls = append(calls, rev)
		if target, err := os.Readlink(s.ManifestDir()); err != nil || target != "rev-"+rev.Hash {
			problems = append(problems, "current -> "+target+" when told of "+rev.Hash)
		}
		if len(calls) == 2 {
			if _, err := os.Stat(filepath.Join(s.cfg.Dir, "rev-"+first)); err != nil {
				problems = append(problems, "the old folder was gone when told of the new revision")
			}
		}
	})
	mustSync(t, s, first)
	mustSync(t, s, first) // unchanged: no call
	second := up.Commit(t, "two", map[string]string{"web.cue": "b\n"})
	mustSync(t, s, second)

	if len(calls) != 2 || calls[0].Hash != first || calls[1].Hash != second || calls[1].Subject != "two" {
		t.Fatalf("OnPublish got %+v, want %s then %s", calls, first, second)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "rev-"+first)); !os.IsNotExist(err) {
		t.Errorf("the old folder is still there after Sync (%v)", err)
	}
	if tm := s.LastTimes(); tm.Started.IsZero() || tm.Fetch <= 0 || tm.Publish <= 0 {
		t.Errorf("LastTimes() = %+v, want the steps of the last publish", tm)
	}
}

// tree is every file below dir, hidden ones too, with its mode and
// content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir+"/", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir+"/", p)
		content := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			content = string(b)
		}
		out[rel] = fi.Mode().String() + " " + content
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

package manifests

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// later makes the cache's reads happen a second after the racy window of
// files just written has passed, so that a stat that did not change is
// trusted.
func later(c *Cache) {
	c.reads.now = func() time.Time { return time.Now().Add(racyWindow + time.Second) }
}

// readCounter tells how many files the cache read since its last call.
type readCounter struct {
	c    *Cache
	seen int
}

func (r *readCounter) since() int {
	n := r.c.Reads() - r.seen
	r.seen = r.c.Reads()
	return n
}

func TestCacheReadsAgainOnlyTheFileThatChanged(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", service("a", 30001))
	writeUnit(t, dir, "b.cue", service("b", 30002))
	writeUnit(t, dir, "c.cue", service("c", 30003))
	var c Cache
	later(&c)
	reads := readCounter{c: &c}

	loadBoth(t, &c, dir)
	if n := reads.since(); n != 3 {
		t.Fatalf("first load read %d files, want 3", n)
	}
	loadBoth(t, &c, dir)
	if n := reads.since(); n != 0 {
		t.Fatalf("a load with nothing changed read %d files, want none", n)
	}
	writeUnit(t, dir, "b.cue", service("b", 30012))
	units := loadBoth(t, &c, dir)
	if n := reads.since(); n != 1 {
		t.Fatalf("a load after b changed read %d files, want b alone", n)
	}
	if got := units[1].Services[0].Ports[0].ExternalPort; got != 30012 {
		t.Fatalf("b's externalPort is %d after the change, want 30012", got)
	}
	// A file removed and one added: only the new one is read.
	if err := os.Remove(filepath.Join(dir, "a.cue")); err != nil {
		t.Fatal(err)
	}
	writeUnit(t, dir, "d.cue", service("d", 30004))
	if units := loadBoth(t, &c, dir); len(units) != 3 || units[0].ID != "b.cue" || units[2].ID != "d.cue" {
		t.Fatalf("units after a went and d came: %+v", units)
	}
	if n := reads.since(); n != 1 {
		t.Fatalf("a load after d was added read %d files, want d alone", n)
	}
}

func ctimeOf(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ctim.Nano()
}

// A file rewritten with the same size and given back its modification
// time (os.Chtimes) looks unchanged to size and mtime; its change time
// tells.
func TestCacheReadsAgainAFileRewrittenWithTheSameSizeAndModificationTime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.cue")
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeUnit(t, dir, "a.cue", service("a", 30001))
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	var c Cache
	later(&c) // the racy window does not help: only the stat can tell
	loadBoth(t, &c, dir)
	before := ctimeOf(t, path)

	// The same length, another port. The change time moves with the
	// kernel's coarse clock: rewrite until it has.
	deadline := time.Now().Add(10 * time.Second)
	for {
		writeUnit(t, dir, "a.cue", service("a", 30009))
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if ctimeOf(t, path) != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change time did not move in 10 s")
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(service("a", 30001))) || !fi.ModTime().Equal(mtime) {
		t.Fatalf("the rewrite changed size or mtime: %d bytes, %v", fi.Size(), fi.ModTime())
	}
	units := loadBoth(t, &c, dir)
	if got := units[0].Services[0].Ports[0].ExternalPort; got != 30009 {
		t.Fatalf("externalPort %d after the rewrite, want 30009", got)
	}
}

// A file whose last change came less than racyWindow before it was read may
// change again within the same tick of the file system's clock without any
// stat showing it: it is read by every load until a read finds it settled.
func TestCacheReadsAgainAFileChangedLessThanTwoSecondsBeforeItsRead(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", service("a", 30001))
	var c Cache
	reads := readCounter{c: &c}
	loadBoth(t, &c, dir) // now: a was written a moment ago
	loadBoth(t, &c, dir)
	if n := reads.since(); n != 2 {
		t.Fatalf("two loads right after the write read a %d times, want 2", n)
	}
	later(&c)
	loadBoth(t, &c, dir) // read again, now settled
	loadBoth(t, &c, dir)
	if n := reads.since(); n != 1 {
		t.Fatalf("two loads past the racy window read a %d times, want 1", n)
	}
}

// git-sync publishes a revision by swapping a symbolic link to a new
// folder: every file is read again, even one of the same size and times
// as the old one's.
func TestCacheReadsEveryFileAgainWhenTheFolderIsSwapped(t *testing.T) {
	root := t.TempDir()
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	for rev, port := range map[string]int{"rev1": 30001, "rev2": 30009} {
		if err := os.Mkdir(filepath.Join(root, rev), 0o755); err != nil {
			t.Fatal(err)
		}
		writeUnit(t, filepath.Join(root, rev), "a.cue", service("a", port))
		writeUnit(t, filepath.Join(root, rev), "b.cue", service("b", 30002))
		for _, f := range []string{"a.cue", "b.cue"} {
			if err := os.Chtimes(filepath.Join(root, rev, f), mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := filepath.Join(root, "current")
	if err := os.Symlink("rev1", link); err != nil {
		t.Fatal(err)
	}
	var c Cache
	later(&c)
	reads := readCounter{c: &c}
	loadBoth(t, &c, link)
	reads.since()
	// ln -s rev2 tmp && mv -T tmp current
	if err := os.Symlink("rev2", filepath.Join(root, "tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "tmp"), link); err != nil {
		t.Fatal(err)
	}
	units := loadBoth(t, &c, link)
	if n := reads.since(); n != 2 {
		t.Fatalf("the load after the swap read %d files, want both", n)
	}
	if got := units[0].Services[0].Ports[0].ExternalPort; got != 30009 {
		t.Fatalf("externalPort %d after the swap, want rev2's 30009", got)
	}
}

func TestCacheReadAllReadsEveryFileAtTheNextLoad(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.cue", service("a", 30001))
	writeUnit(t, dir, "b.cue", service("b", 30002))
	var c Cache
	later(&c)
	reads := readCounter{c: &c}
	loadBoth(t, &c, dir)
	loadBoth(t, &c, dir)
	reads.since()
	c.ReadAll()
	loadBoth(t, &c, dir)
	loadBoth(t, &c, dir)
	if n := reads.since(); n != 2 {
		t.Fatalf("two loads after ReadAll read %d files, want each once", n)
	}
}

package manifests

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// reads keeps every manifest file a Cache's last load read, with what
// stat said of it then, so that the next load reads again only the files
// whose stat changed: with 1,000 units, opening and reading every file (and
// parsing its package clause) was most of an agent's pass after one file
// changed. A stat of each file is still taken on every load, which is level
// triggered: it does not depend on the file watch having seen the change,
// and it follows a file that is a symbolic link to a file outside the
// watched folders.
type reads struct {
	root  string              // the manifest folder's real path at the last load
	files map[string]readFile // by path as walked
	all   bool                // the next load reads every file (ReadAll)
	count int                 // files read, in all
	now   func() time.Time    // time.Now when nil; tests move it on
}

// readFile is a file as read, with the stat taken as it was read.
type readFile struct {
	stamp stamp
	// settled is false when the file changed within racyWindow of its
	// read (see racyWindow): such a file is read again by every load
	// until a read finds it settled.
	settled bool
	data    []byte
	pkg     string
}

// stamp is what changes when a file's content may have changed: the inode
// (a file renamed over the old one, as editors and git-sync do), the size,
// the modification time (which os.Chtimes can set back) and the change
// time (which nothing can set: every write and every chtimes sets it to
// the present).
type stamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

func stampOf(fi os.FileInfo) (stamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{}, false
	}
	return stamp{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}, true
}

// racyWindow is the "racy git" rule: a stat says nothing about a write
// that comes after the read within the same tick of the file system's
// clock, since the write leaves size and times as they were (a rewrite of
// the same length within a second on a file system that keeps whole
// seconds, or within a clock tick of a few milliseconds on ext4, xfs and
// tmpfs, which take their times from the kernel's coarse clock). So a file
// whose change time or modification time is less than racyWindow before
// its read is not trusted: it is read again by the next load, and the
// next, until one read comes a racyWindow after its last change. Two
// seconds cover the coarsest steps of the file systems Linux writes (FAT
// keeps modification times in steps of 2 s, and no change time); the cost
// is a re-read of a file changed in the last two seconds, which is small.
const racyWindow = 2 * time.Second

// start begins a load under root (the manifest folder's real path):
// every file is read again when ReadAll asked for it or when root is not
// the folder of the last load, as when git-sync swapped the symbolic
// link to a new worktree (whose files are new inodes anyway; an old
// inode number reused in the new tree would only be caught by its times).
func (r *reads) start(root string) (last map[string]readFile) {
	if r.all || r.root != root {
		r.all, r.root = false, root
		return nil
	}
	return r.files
}

// read returns the file at path: what the last load read, when the file's
// stat is as it was then and that read was settled, or its content now.
func (r *reads) read(last, next map[string]readFile, path, display, dir string) source {
	if prev, ok := last[path]; ok && prev.settled {
		if fi, err := os.Stat(path); err == nil {
			if st, ok := stampOf(fi); ok && st == prev.stamp {
				next[path] = prev
				return source{display: display, dir: dir, data: prev.data, pkg: prev.pkg}
			}
		}
	}
	r.count++
	now := r.now
	if now == nil {
		now = time.Now
	}
	rf, err := readStamped(path, now)
	s := source{display: display, dir: dir, data: rf.data, err: err}
	if err != nil {
		return s // not kept: a file that cannot be read is tried again
	}
	s.pkg = packageName(s)
	rf.pkg = s.pkg
	next[path] = rf
	return s
}

// readStamped reads a file and stats it through the same descriptor, so
// that the stamp is of the inode read. The stat comes first: a write
// between it and the read leaves new content under an older stamp, which
// the next load's stat no longer matches, so it reads the file again.
func readStamped(path string, now func() time.Time) (readFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return readFile{}, err
	}
	defer f.Close()
	at := now()
	fi, err := f.Stat()
	if err != nil {
		return readFile{}, err
	}
	st, ok := stampOf(fi)
	if !ok {
		return readFile{}, fmt.Errorf("stat %s: no inode number", path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return readFile{}, err
	}
	limit := at.Add(-racyWindow).UnixNano()
	return readFile{stamp: st, settled: st.mtime < limit && st.ctime < limit, data: data}, nil
}

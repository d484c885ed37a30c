package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cuelet/cuelet/manifests"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// Watcher turns changes of a manifest directory into kicks. It watches two
// kinds of folders:
//
//   - the folders on the way to the manifest directory, including every
//     folder a symbolic link on that way points into. git-sync publishes a
//     revision by swapping a symlink (`ln -s rev tmp && mv -T tmp link`) and
//     deletes the old target at once, so watches inside a worktree die with
//     it; the swap itself shows only as an event in the link's parent.
//     Only the names on the way matter there; the rest of /etc is noise.
//   - every folder of the resolved tree that the loader would read.
//
// After any change of the folder structure it resolves the path again and
// adjusts its watches, so a manifest folder that appears after start, is
// removed and recreated, or is swapped by git-sync keeps being followed.
type Watcher struct {
	path string
	// keep reports whether a file name can be part of a unit; changes to
	// other names (editor swap files, backups) cause no kick.
	keep func(name string) bool
	log  zerolog.Logger

	fsw  *fsnotify.Watcher
	hops map[string]map[string]bool // folder -> names on the way to the manifest dir
	tree map[string]bool            // folders of the resolved tree
	// watch maps each folder fsw watches to the identity of the folder
	// that was there when the watch was added. A watch belongs to an
	// inode, not a name: a folder removed and recreated under the same
	// name before we look again must be watched anew.
	watch map[string]fileID
}

// fileID identifies a folder on the node independent of its name.
type fileID struct{ dev, ino uint64 }

func idOf(p string) (fileID, bool) {
	fi, err := os.Stat(p)
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, true
}

// NewWatcher watches path (which need not exist yet). keep filters file
// names inside the tree; folders are followed unless the loader ignores
// their name (manifests.Ignored: hidden, editor leftovers).
func NewWatcher(path string, keep func(name string) bool, log zerolog.Logger) (*Watcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	w := &Watcher{path: abs, keep: keep, log: log, fsw: fsw, watch: map[string]fileID{}}
	w.rescan()
	return w, nil
}

// Close releases the inotify instance.
func (w *Watcher) Close() error { return w.fsw.Close() }

// Run delivers a kick for every relevant change until ctx is done.
func (w *Watcher) Run(ctx context.Context, kick func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return nil
			}
			// An overflowed queue lost events: we no longer know what
			// changed, so look at everything again.
			w.log.Warn().Err(err).Str("action", "watch").Msg("file watch error; rescanning")
			w.rescan()
			kick()
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return nil
			}
			if w.relevant(ev) {
				kick()
			}
		}
	}
}

// relevant reports whether ev may change the units, rescanning the
// watches when it changes the folder structure.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false // permission changes show up when reading fails anyway
	}
	if _, watched := w.watch[ev.Name]; watched && ev.Has(fsnotify.Create|fsnotify.Remove|fsnotify.Rename) {
		// A watched folder's name was removed, renamed or replaced, as
		// seen from its parent. Its watch is dead or about to be, and a
		// folder recreated under the name may even reuse the inode
		// number, so forget the watch: the rescan below adds it anew.
		_ = w.fsw.Remove(ev.Name)
		delete(w.watch, ev.Name)
	}
	dir, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	if w.hops[dir][name] {
		w.rescan()
		return true
	}
	if !w.tree[dir] {
		return false
	}
	if w.tree[ev.Name] || (ev.Has(fsnotify.Create) && isDir(ev.Name) && !manifests.Ignored(name)) {
		w.rescan()
		return true
	}
	return w.keep(name)
}

func isDir(p string) bool {
	fi, err := os.Stat(p) // follows symlinks: a linked folder is read too
	return err == nil && fi.IsDir()
}

// rescan recomputes the folders to watch and adjusts the watches. A
// folder created inside a newly watched one between our look and the
// watch taking effect sends no event, so after adding a watch we look
// again, until a look adds nothing (bounded, for a tree that keeps
// growing: the next event brings us back anyway).
func (w *Watcher) rescan() {
	for range 8 {
		if !w.rescanOnce() {
			return
		}
	}
}

// rescanOnce adjusts the watches once and reports whether it added any.
func (w *Watcher) rescanOnce() (added bool) {
	hops, resolved := resolveHops(w.path)
	tree := map[string]bool{}
	if resolved != "" {
		walkTree(resolved, tree, map[string]bool{})
	}
	want := map[string]bool{}
	for d := range hops {
		want[d] = true
	}
	for d := range tree {
		want[d] = true
	}
	for d := range w.watch {
		if !want[d] {
			// The folder may be gone already, and with it the watch.
			_ = w.fsw.Remove(d)
			delete(w.watch, d)
		}
	}
	for d := range want {
		id, ok := idOf(d)
		if !ok {
			continue // gone again; the event in its parent brings us back
		}
		if old, watched := w.watch[d]; watched {
			if old == id {
				continue
			}
			// Same name, another folder: the old watch died with the
			// old folder (or will); drop it before watching the new one.
			_ = w.fsw.Remove(d)
			delete(w.watch, d)
		}
		if err := w.fsw.Add(d); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				w.log.Warn().Err(err).Str("action", "watch").Str("dir", d).Msg("cannot watch folder")
			}
			continue
		}
		w.watch[d] = id
		added = true
	}
	w.hops, w.tree = hops, tree
	return added
}

// resolveHops walks p one name at a time, following symlinks, and records
// for every folder passed the name taken in it. resolved is the real path
// of p, or "" when p does not exist (yet).
func resolveHops(p string) (hops map[string]map[string]bool, resolved string) {
	hops = map[string]map[string]bool{}
	cur := "/"
	rest := splitPath(p)
	for steps := 0; len(rest) > 0; steps++ {
		if steps > 255 { // a symlink loop on the way
			return hops, ""
		}
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		if hops[cur] == nil {
			hops[cur] = map[string]bool{}
		}
		hops[cur][name] = true
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return hops, ""
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		target, err := os.Readlink(next)
		if err != nil {
			return hops, ""
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	return hops, cur
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}

// walkTree adds dir and every folder below it that the loader reads,
// following symlinked folders once each.
func walkTree(dir string, tree, seen map[string]bool) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil || seen[real] {
		return
	}
	seen[real] = true
	tree[dir] = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if manifests.Ignored(e.Name()) {
			continue // the loader does not read it
		}
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || (e.Type()&fs.ModeSymlink != 0 && isDir(p)) {
			walkTree(p, tree, seen)
		}
	}
}

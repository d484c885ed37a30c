package manifests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cuelang.org/go/cue/parser"
)

// Ignored reports whether a name found in a manifest directory is left
// out: hidden names (.git, git-sync's .worktrees) and editor leftovers.
// Files must also end in .cue to count; see isManifest.
func Ignored(name string) bool {
	return strings.HasPrefix(name, ".") ||
		strings.HasSuffix(name, "~") ||
		strings.HasSuffix(name, ".swp") ||
		strings.HasSuffix(name, ".tmp") ||
		(len(name) > 1 && strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"))
}

// IsManifest reports whether a file name can be part of a unit.
func IsManifest(name string) bool {
	return !Ignored(name) && strings.HasSuffix(name, ".cue")
}

// source is one file found under a root.
type source struct {
	display string // as problems show it
	dir     string // display folder, for grouping
	data    []byte
	err     error  // reading it failed
	pkg     string // its package clause's name; "" for none
}

func readSource(path, display, dir string) source {
	data, err := os.ReadFile(path)
	s := source{display: display, dir: dir, data: data, err: err}
	s.pkg = packageName(s)
	return s
}

// finder walks a root, following symbolic links.
type finder struct {
	sources []source
	loops   []Problem
	// With reads set (a Cache's load), files come through it: last holds
	// the files the last load read, next those of this one.
	reads      *reads
	last, next map[string]readFile
}

// read reads one manifest file, through reads when set.
func (f *finder) read(path, display, dir string) source {
	if f.reads == nil {
		return readSource(path, display, dir)
	}
	return f.reads.read(f.last, f.next, path, display, dir)
}

// find collects the manifest files under root. A root that is a file is
// taken whatever its name: the user named it.
func (f *finder) find(root, display string) error {
	info, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("read manifests: %w", err)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("read manifests: %w", err)
	}
	if f.reads != nil {
		f.last, f.next = f.reads.start(real), map[string]readFile{}
	}
	if !info.IsDir() {
		f.sources = append(f.sources, f.read(root, display, filepath.Dir(display)))
		return nil
	}
	return f.dir(root, display, []string{real})
}

// dir walks one folder. stack holds the real paths of the folders above,
// so that a link back to one of them is reported instead of followed.
func (f *finder) dir(path, display string, stack []string) error {
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("read manifests: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if Ignored(name) {
			continue
		}
		p, d := filepath.Join(path, name), filepath.Join(display, name)
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			info, err := os.Stat(p)
			if err != nil {
				// A dangling link, as git-sync may leave for an instant
				// while it swaps revisions: nothing to read there.
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("read manifests: %w", err)
			}
			mode = info.Mode().Type()
		}
		switch {
		case mode.IsDir():
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("read manifests: %w", err)
			}
			if slices.Contains(stack, real) {
				f.loops = append(f.loops, Problem{File: d, Line: 1, Column: 1,
					Message: fmt.Sprintf("symbolic link loop: %s leads back to %s; not followed", d, real)})
				continue
			}
			if err := f.dir(p, d, append(stack[:len(stack):len(stack)], real)); err != nil {
				return err
			}
		case mode.IsRegular() && IsManifest(name):
			f.sources = append(f.sources, f.read(p, d, display))
		}
	}
	return nil
}

// group is the files of one unit before they are read in full.
type group struct {
	id      string
	sources []source
}

// groupSources makes units: the files of one folder that share a package
// clause are one unit, every other file is a unit of its own.
func groupSources(sources []source) []group {
	var out []group
	byPkg := map[string]int{}
	for _, s := range sources {
		pkg := s.pkg
		if pkg == "" {
			out = append(out, group{id: s.display, sources: []source{s}})
			continue
		}
		id := s.dir + ":" + pkg
		if i, ok := byPkg[id]; ok {
			out[i].sources = append(out[i].sources, s)
			continue
		}
		byPkg[id] = len(out)
		out = append(out, group{id: id, sources: []source{s}})
	}
	for _, g := range out {
		slices.SortFunc(g.sources, func(a, b source) int { return strings.Compare(a.display, b.display) })
	}
	slices.SortFunc(out, func(a, b group) int { return strings.Compare(a.id, b.id) })
	return out
}

// packageName parses only the package clause of a file. A file that cannot
// be read or parsed this far stays a unit of its own; checking it in full
// reports why.
func packageName(s source) string {
	if s.err != nil {
		return ""
	}
	f, err := parser.ParseFile(s.display, s.data, parser.PackageClauseOnly)
	if err != nil {
		return ""
	}
	return f.PackageName()
}

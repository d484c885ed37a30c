package manifests

import (
	"context"
	"errors"
	"fmt"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"

	"cuelang.org/go/cue/token"

	"github.com/cuelet/cuelet/schema"
)

// Load finds and checks every unit under each root, a file or a folder.
// FILE in problems is the root as given joined with the path below it,
// and so are the units' IDs. Cross-unit rules are checked too (see
// CheckCrossUnit). The error is only for a root that cannot be read at
// all; everything wrong inside is a Problem of some unit.
func Load(ctx context.Context, roots []string, opts Options) ([]*Unit, error) {
	var f finder
	for _, root := range roots {
		if err := f.find(root, root); err != nil {
			return nil, err
		}
	}
	return f.load(ctx, opts, nil)
}

// LoadDir is Load for the agent's manifest directory: FILE in problems and
// the units' IDs are relative to dir, so they stay the same wherever the
// directory is.
func LoadDir(ctx context.Context, dir string, opts Options) ([]*Unit, error) {
	return (*Cache)(nil).LoadDir(ctx, dir, opts)
}

// load checks the units found, those the cache does not hold (all of them
// without a cache), then the cross-unit rules over all of them.
func (f *finder) load(ctx context.Context, opts Options, cache *Cache) ([]*Unit, error) {
	groups := groupSources(f.sources)
	units := make([]*Unit, len(groups))
	todo, keys := cache.fill(groups, units, opts)
	if err := checkAll(ctx, groups, todo, units, opts, runtime.GOMAXPROCS(0), checkerUnits, cache.spare()); err != nil {
		return nil, err
	}
	cache.keep(groups, keys, units, len(todo))
	for _, p := range f.loops {
		units = append(units, &Unit{ID: p.File, Files: []string{p.File}, Problems: []Problem{p}})
	}
	CheckCrossUnit(units)
	return units, nil
}

// checkerUnits is how many units a worker checks with one Checker (see
// checkAll): compiling the schema costs about as much as checking three
// units, and the Checker holds about 18 KB per unit, so 64 units cost about
// 3 % more CPU than one Checker for all and hold about 1 MB.
const checkerUnits = 64

// checkAll checks the groups at the indexes todo, putting each unit at
// its group's index in units, so that the order of the result does not
// depend on which worker finished first.
//
// The workers share nothing of CUE's: a cue.Context, and the values built
// in it, are not safe for concurrent use, even though cue.Value's comment
// says its methods may be called concurrently: evaluation is lazy and
// writes into the shared vertices (cue-lang/cue#2733, "values are not safe
// for concurrent use"; #4351 for FillPath and #4379 for Unify, both on
// v0.16/v0.17). So each worker compiles the schema into a context of its
// own (schema.NewChecker, about 3 ms) and unifies its units there; the Go
// model each unit decodes into is plain data, shared freely afterwards.
// A worker also replaces its Checker after perChecker units: a
// cue.Context keeps every value it has built for as long as it lives (the
// runtime registers each file it builds, cue-lang/cue#2121 and #1424), some
// 18 KB per unit of the benchmark, so one Checker per worker for 1,000 units
// held most of the peak heap. For the same reason no Checker outlives a
// load but kept's, which is replaced after perChecker units too: the first
// worker starts from kept's Checker and leaves its own there (a Cache's,
// see keptChecker).
func checkAll(ctx context.Context, groups []group, todo []int, units []*Unit, opts Options, workers, perChecker int, kept *keptChecker) error {
	workers = min(workers, len(todo))
	next := make(chan int)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *schema.Checker
			n := 0
			if w == 0 && kept != nil {
				if kept.c != nil {
					c, n = kept.c, kept.n
				}
				defer func() { kept.c, kept.n = c, n }()
			}
			for i := range next {
				if n%perChecker == 0 {
					var err error
					if c, err = schema.NewChecker(); err != nil {
						errs[w] = err
						for range next {
						}
						return
					}
				}
				n++
				units[i] = checkUnit(c, groups[i], opts)
			}
		}()
	}
	var err error
feed:
	for _, i := range todo {
		select {
		case next <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return err
}

// keptChecker is a Checker that a Cache keeps from one load to the next,
// with the number of units it has checked: most of the agent's loads check
// one unit or two, and a fresh Checker costs more than such a check (the
// schema compiled, then evaluated by its first check: 1.9 ms for a small
// unit on a fresh Checker, 0.85 ms on one that has checked before). It
// holds at most checkerUnits units' values, about 1 MB.
type keptChecker struct {
	c *schema.Checker
	n int
}

// checkUnit reads, checks and decodes one unit.
func checkUnit(c *schema.Checker, g group, opts Options) *Unit {
	u := &Unit{ID: g.id, Source: map[string][]byte{}}
	files := make([]schema.File, 0, len(g.sources))
	for _, s := range g.sources {
		u.Files = append(u.Files, s.display)
		if s.err != nil {
			u.Problems = append(u.Problems, Problem{File: s.display, Line: 1, Column: 1, Message: fmt.Sprintf("cannot read: %v", s.err)})
			continue
		}
		u.Source[s.display] = s.data
		files = append(files, schema.File{Name: s.display, Data: s.data})
	}
	if len(u.Problems) > 0 {
		return u
	}
	res := c.Check(files)
	u.places = res.Places
	for _, is := range res.Issues {
		u.Problems = append(u.Problems, problemAt(is.Pos.Filename, is.Pos.Line, is.Pos.Column, is.Path, is.Message, g))
	}
	if len(u.Problems) > 0 {
		return u
	}
	m, err := decode(res.Value)
	if err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			u.Problems = append(u.Problems, u.problem(fe.path, true, fe.err.Error()))
		} else {
			u.Problems = append(u.Problems, Problem{File: u.Files[0], Line: 1, Column: 1, Message: err.Error()})
		}
		return u
	}
	u.Pods, u.Services = m.Pods, m.Services
	for i := range u.Pods {
		u.Pods[i].DNS = podDNS(&u.Pods[i], opts)
	}
	u.Problems = append(selectorProblems(u), nodeProblems(u, opts)...)
	sortProblems(u.Problems)
	if len(u.Problems) > 0 {
		u.Pods, u.Services = nil, nil
	}
	return u
}

// problemAt builds a Problem; an issue without a position (rare: a value
// built by a comprehension) points at the unit's first file.
func problemAt(file string, line, col int, path, msg string, g group) Problem {
	if file == "" || line == 0 {
		file, line, col = g.sources[0].display, 1, 1
	}
	return Problem{File: file, Line: line, Column: col, Path: path, Message: msg}
}

// problem positions a message at path in the unit: at the value the user
// wrote there, or at the label of the field (or of the nearest enclosing
// field that the user wrote).
func (u *Unit) problem(path []string, atValue bool, msg string) Problem {
	var pos token.Position
	if u.places != nil {
		if atValue {
			pos = u.places.Value(path...)
		} else {
			pos = u.places.Label(path...)
		}
	}
	if !pos.IsValid() {
		pos = token.Position{Filename: u.Files[0], Line: 1, Column: 1}
	}
	return Problem{File: pos.Filename, Line: pos.Line, Column: pos.Column, Path: schema.FormatPath(path...), Message: msg}
}

// LoadSource checks one unit whose files are already in memory, keyed by
// the names Unit.Files shows: the agent's saved last known good version of
// a unit that no longer validates. Cross-unit rules are not checked; the
// caller runs CrossUnitProblems over the set it builds.
func LoadSource(id string, files map[string][]byte, opts Options) (*Unit, error) {
	c, err := schema.NewChecker()
	if err != nil {
		return nil, err
	}
	g := group{id: id}
	for name, data := range files {
		g.sources = append(g.sources, source{display: name, dir: path.Dir(name), data: data})
	}
	if len(g.sources) == 0 {
		return nil, fmt.Errorf("unit %s: no files", id)
	}
	slices.SortFunc(g.sources, func(a, b source) int { return strings.Compare(a.display, b.display) })
	return checkUnit(c, g, opts), nil
}

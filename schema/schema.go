// Package schema holds cuelet's CUE schema, built into the binary, and
// validates units against it, turning CUE's errors into problems a person
// can act on: one line each, positioned in the user's file.
package schema

import (
	_ "embed"
	"fmt"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
)

// Source is the schema as written, printed by `cuelet schema`.
//
//go:embed cuelet.cue
var Source []byte

// Filename is the name the schema's positions carry. Problems never point
// into it; it only tells schema positions apart from the user's.
const Filename = "cuelet.cue"

// compile builds #Manifest of the schema src in ctx.
func compile(ctx *cue.Context, src []byte) (cue.Value, error) {
	v := ctx.CompileBytes(src, cue.Filename(Filename))
	if err := v.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("compile the built-in schema: %w", err)
	}
	m := v.LookupPath(cue.MakePath(cue.Def("#Manifest")))
	if err := m.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("find #Manifest in the built-in schema: %w", err)
	}
	return m, nil
}

// NewChecker compiles the schema without its rules into a cue.Context of
// its own, which takes some 3 ms, and the whole schema when a unit first
// needs it (see Check). A Checker is for one goroutine, and for a bounded
// number of units: its context keeps every value it has built, and every
// label it has seen, for as long as it lives (cue-lang/cue#2121).
func NewChecker() (*Checker, error) {
	if err := sourceCompiles(); err != nil {
		return nil, err
	}
	src, err := withoutRules()
	if err != nil {
		return nil, err
	}
	ctx := cuecontext.New()
	quick, err := compile(ctx, src)
	if err != nil {
		return nil, err
	}
	return &Checker{ctx: ctx, quick: quick}, nil
}

// sourceCompiles compiles the whole schema once in the process, so that
// NewChecker reports a broken one and a Checker's compile of it later
// cannot fail.
var sourceCompiles = sync.OnceValue(func() error {
	_, err := compile(cuecontext.New(), Source)
	return err
})

// schema is #Manifest, the whole schema, compiled into c's context when
// first asked for: most Checkers only ever see valid units, which the
// schema without its rules checks, and compiling the whole schema as
// well took about 5 % of the time of checking them.
func (c *Checker) schema() cue.Value {
	if !c.manifest.Exists() {
		m, err := compile(c.ctx, Source)
		if err != nil {
			panic(err) // sourceCompiles compiled it in NewChecker
		}
		c.manifest = m
	}
	return c.manifest
}

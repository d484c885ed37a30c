// Package schema holds cuelet's CUE schema, built into the binary, and
// validates units against it, turning CUE's errors into problems a person
// can act on: one line each, positioned in the user's file.
package schema

import (
	_ "embed"
	"fmt"

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

// compile builds #Manifest in ctx.
func compile(ctx *cue.Context) (cue.Value, error) {
	v := ctx.CompileBytes(Source, cue.Filename(Filename))
	if err := v.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("compile the built-in schema: %w", err)
	}
	m := v.LookupPath(cue.MakePath(cue.Def("#Manifest")))
	if err := m.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("find #Manifest in the built-in schema: %w", err)
	}
	return m, nil
}

// NewChecker compiles the schema into a cue.Context of its own, which
// takes some 3 ms. A Checker is for one goroutine, and for a bounded
// number of units: its context keeps every value it has built, and every
// label it has seen, for as long as it lives (cue-lang/cue#2121).
func NewChecker() (*Checker, error) {
	ctx := cuecontext.New()
	m, err := compile(ctx)
	if err != nil {
		return nil, err
	}
	return &Checker{ctx: ctx, manifest: m}, nil
}

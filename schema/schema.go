// Package schema holds cuelet's CUE schema, built into the binary, and
// validates units against it.
package schema

import (
	_ "embed"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
)

// Source is the schema as written, printed by `cuelet schema`.
//
//go:embed cuelet.cue
var Source []byte

// compiled is built once per process: compiling the schema is the single
// most expensive step of validating a small unit.
var compiled = sync.OnceValues(func() (cue.Value, error) {
	ctx := cuecontext.New()
	v := ctx.CompileBytes(Source, cue.Filename("cuelet.cue"))
	return v, v.Err()
})

// Manifest returns #Manifest, the definition every unit is unified with.
func Manifest() (cue.Value, error) {
	v, err := compiled()
	if err != nil {
		return cue.Value{}, err
	}
	return v.LookupPath(cue.ParsePath("#Manifest")), nil
}

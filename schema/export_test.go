package schema

import (
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
)

// QuickAccepts reports whether Check's quick way (checkValid) accepts the
// file src, which must parse.
func QuickAccepts(c *Checker, src string) (bool, error) {
	f, err := parser.ParseFile("t.cue", src)
	if err != nil {
		return false, err
	}
	_, ok := c.checkValid([]*ast.File{f})
	return ok, nil
}

package schema

import (
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/ast/astutil"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
)

// Issue is one broken rule, positioned in the user's file.
type Issue struct {
	Pos     token.Position
	Path    string // e.g. pods.api.replicas, without #Manifest
	Message string
}

// Checker unifies units with #Manifest. It holds a cue.Context, which is
// not safe for concurrent use: use one Checker per goroutine.
type Checker struct {
	ctx      *cue.Context
	quick    cue.Value // #Manifest without the schema's rules (see rules.go)
	manifest cue.Value // #Manifest, once compiled (see schema)
}

// File is one file of a unit: its name as problems show it, and its bytes.
type File struct {
	Name string
	Data []byte
}

// maxRounds bounds how often Check takes out the fields it found wrong and
// looks again (see Check).
const maxRounds = 4

// Result is what Check found out about a unit.
type Result struct {
	// Value is the unit unified with #Manifest, every default filled in;
	// only meaningful when there are no Issues.
	Value cue.Value
	// Issues are sorted by position.
	Issues []Issue
	// Places tells where the user wrote a field, for checks made later.
	Places *Places
}

// Check unifies the files of one unit with #Manifest.
//
// A valid unit is checked the quick way (checkValid): against the schema
// without its comprehension rules, which are checked in Go. Anything wrong
// sends the unit the long way, against the whole schema:
//
// CUE stops looking into a struct once something in it is wrong, and drops
// "required" errors when there are others, so a misspelt field can hide a
// missing image. When a unit has errors, Check therefore takes the fields it
// found wrong out of the syntax and validates again, a few rounds at most,
// keeping what is new and not about a field it took out.
func (c *Checker) Check(files []File) *Result {
	r := &report{seen: map[string]bool{}, removable: map[token.Pos]string{}, checks: map[int]string{}}
	syntax := make([]*ast.File, 0, len(files))
	for _, f := range files {
		x, err := parser.ParseFile(f.Name, f.Data)
		if err != nil {
			r.addErr(err)
			continue
		}
		syntax = append(syntax, x)
	}
	if len(r.issues) > 0 {
		return &Result{Issues: r.sorted(), Places: &Places{}}
	}
	if v, ok := c.checkValid(syntax); ok {
		return &Result{Value: v, Places: &Places{files: files}}
	}
	r.syntax = syntax
	r.schema = c.schema()
	var first cue.Value
	for round := 0; round < maxRounds; round++ {
		user := c.build(syntax)
		if err := user.Err(); err != nil {
			// The files do not evaluate on their own (a reference to
			// nothing, two values for one field): nothing to compare.
			r.addErr(err)
			break
		}
		v := r.schema.Unify(user)
		if round == 0 {
			first = v
		}
		err := v.Validate(cue.Concrete(true))
		if err == nil {
			break
		}
		before := len(r.issues)
		r.user = user
		r.addErr(err)
		if round == 0 {
			r.walkUser(user, r.schema, nil)
		}
		if len(r.issues) == before || !r.takeOut(syntax) {
			break
		}
	}
	r.consequences()
	if r.places == nil {
		return &Result{Value: first, Issues: r.sorted(), Places: &Places{files: files}}
	}
	return &Result{Value: first, Issues: r.sorted(), Places: &Places{m: r.places}}
}

// checkValid is Check's quick way for a valid unit: it unifies the unit
// with #Manifest of the schema without its rules, and checks the rules in
// Go on the result (see rules.go). It reports whether it found nothing
// wrong; a unit with anything wrong takes the long way, which words and
// positions what is.
func (c *Checker) checkValid(files []*ast.File) (cue.Value, bool) {
	user := c.buildQuick(files)
	if user.Err() != nil {
		return cue.Value{}, false
	}
	v := c.quick.Unify(user)
	if v.Validate(cue.Concrete(true)) != nil || !rulesHold(v) {
		return cue.Value{}, false
	}
	return v, true
}

// buildQuick is build, but for a file without imports (every unit of the
// benchmark) it builds the file's fields as an expression: the context
// keeps every file it builds for as long as it lives, and not an
// expression. A file with imports cannot be an expression.
func (c *Checker) buildQuick(files []*ast.File) cue.Value {
	if len(files) != 1 {
		return c.build(files)
	}
	f := files[0]
	body := f.Decls
	for len(body) > 0 {
		switch body[0].(type) {
		case *ast.ImportDecl:
			return c.build(files)
		case *ast.Package, *ast.Attribute, *ast.CommentGroup:
			body = body[1:]
			continue
		}
		break
	}
	return c.ctx.BuildExpr(&ast.StructLit{Elts: body})
}

// takeOut deletes the fields that issues were found in from the syntax and
// remembers their paths, so that the next round neither stops at them nor
// reports them missing. It reports whether it took anything out.
func (r *report) takeOut(files []*ast.File) bool {
	if len(r.removable) == 0 {
		return false
	}
	for _, f := range files {
		astutil.Apply(f, func(c astutil.Cursor) bool {
			if fld, ok := c.Node().(*ast.Field); ok && r.removable[fld.Label.Pos()] != "" {
				c.Delete()
				return false
			}
			return true
		}, nil)
	}
	for _, p := range r.removable {
		r.removed = append(r.removed, p)
	}
	clear(r.removable)
	return true
}

// build evaluates the user's files as one value, without the schema.
func (c *Checker) build(files []*ast.File) cue.Value {
	if len(files) == 1 {
		return c.ctx.BuildFile(files[0])
	}
	inst := build.NewContext().NewInstance("", nil)
	for _, f := range files {
		if err := inst.AddSyntax(f); err != nil {
			inst.Err = errors.Append(inst.Err, errors.Promote(err, "add file"))
		}
	}
	return c.ctx.BuildInstance(inst)
}

func unquote(s string) string {
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	return s
}

// errPath is an error's path without #Manifest.
func errPath(e errors.Error) []string {
	p := e.Path()
	if len(p) > 0 && p[0] == "#Manifest" {
		p = p[1:]
	}
	out := make([]string, len(p))
	for i, s := range p {
		out[i] = unquote(s)
	}
	return out
}

func (r *report) sorted() []Issue {
	slices.SortStableFunc(r.issues, func(a, b Issue) int {
		if c := strings.Compare(a.Pos.Filename, b.Pos.Filename); c != 0 {
			return c
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		if a.Pos.Column != b.Pos.Column {
			return a.Pos.Column - b.Pos.Column
		}
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	return r.issues
}

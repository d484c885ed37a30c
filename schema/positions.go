package schema

import (
	"strconv"
	"strings"
	"sync"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
)

// place is where the user wrote a field: its label and its value.
type place struct {
	label, value token.Pos
}

// places maps a field's path (as formatPath writes it) to where the user
// wrote it. CUE's errors carry the positions of every conjunct, mostly the
// schema's; the user's syntax is the reliable source of the user's
// positions. A field written twice keeps its first place.
type places map[string]place

// Places tells where the user wrote the fields of a unit. It is safe for
// concurrent use.
//
// A valid unit's Places holds only the files and indexes them when first
// asked: few valid units ever need a position (a cross-unit conflict, a
// node rule), and the index of every field took a third of what a valid
// unit kept after its check and 3 % of the CPU time of checking it.
type Places struct {
	once  sync.Once
	files []File
	m     places
}

// index is p's index, built from its files on first use.
func (p *Places) index() places {
	p.once.Do(func() {
		if p.m != nil {
			return
		}
		syntax := make([]*ast.File, 0, len(p.files))
		for _, f := range p.files {
			// The files parsed when they were checked.
			if x, err := parser.ParseFile(f.Name, f.Data); err == nil {
				syntax = append(syntax, x)
			}
		}
		p.m = indexFiles(syntax)
		p.files = nil
	})
	return p.m
}

// Label is the position of the label of the field at path, or of its
// nearest enclosing field that the user wrote; for a list element, the
// element's. The zero Position when there is none.
func (p *Places) Label(path ...string) token.Position {
	pl, _ := p.index().find(path)
	return pl.label.Position()
}

// Value is the position of the value of the field at path; when the user
// did not write that field, the label of the nearest enclosing one.
func (p *Places) Value(path ...string) token.Position {
	pl, exact := p.index().find(path)
	if exact {
		return pl.value.Position()
	}
	return pl.label.Position()
}

// FormatPath writes a path the way problems show it.
func FormatPath(path ...string) string { return formatPath(path) }

// indexFiles records every field of the files, including the fields of
// structs written inline, shorthand (a: b: c: 1) and list elements.
func indexFiles(files []*ast.File) places {
	p := places{}
	for _, f := range files {
		p.decls(nil, f.Decls)
	}
	return p
}

func (p places) decls(path []string, decls []ast.Decl) {
	for _, d := range decls {
		switch d := d.(type) {
		case *ast.Field:
			name, ok := labelName(d.Label)
			if !ok {
				continue
			}
			q := append(path[:len(path):len(path)], name)
			key := formatPath(q)
			if _, seen := p[key]; !seen {
				p[key] = place{label: d.Label.Pos(), value: d.Value.Pos()}
			}
			p.expr(q, d.Value)
		case *ast.EmbedDecl:
			p.expr(path, d.Expr)
		}
	}
}

func (p places) expr(path []string, x ast.Expr) {
	switch x := x.(type) {
	case *ast.StructLit:
		p.decls(path, x.Elts)
	case *ast.ListLit:
		for i, e := range x.Elts {
			q := append(path[:len(path):len(path)], strconv.Itoa(i))
			key := formatPath(q)
			if _, seen := p[key]; !seen {
				p[key] = place{label: e.Pos(), value: e.Pos()}
			}
			p.expr(q, e)
		}
	case *ast.BinaryExpr:
		if x.Op == token.AND {
			p.expr(path, x.X)
			p.expr(path, x.Y)
		}
	case *ast.ParenExpr:
		p.expr(path, x.X)
	}
}

// labelName is the name of a regular field's label; pattern constraints,
// definitions and hidden fields have none.
func labelName(l ast.Label) (string, bool) {
	name, isIdent, err := ast.LabelName(l)
	if err != nil {
		return "", false
	}
	if name == "" {
		// Only a quoted "" is a (wrong, but written) field name.
		_, quoted := l.(*ast.BasicLit)
		return "", quoted
	}
	if isIdent && (strings.HasPrefix(name, "#") || strings.HasPrefix(name, "_")) {
		return "", false
	}
	return name, true
}

// find returns the place of path, or of its nearest ancestor that the user
// wrote, and whether it was path itself.
func (p places) find(path []string) (place, bool) {
	for i := len(path); i > 0; i-- {
		if pl, ok := p[formatPath(path[:i])]; ok {
			return pl, i == len(path)
		}
	}
	return place{}, false
}

// formatPath writes a path the way problems show it: labels joined by dots,
// list indexes as numbers, and labels quoted only where a dot or a space
// would make them ambiguous.
func formatPath(path []string) string {
	var b strings.Builder
	for i, s := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if plainLabel(s) {
			b.WriteString(s)
		} else {
			b.WriteString(strconv.Quote(s))
		}
	}
	return b.String()
}

func plainLabel(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '$', r == '#':
		default:
			return false
		}
	}
	return true
}

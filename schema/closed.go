package schema

import (
	"strconv"

	"cuelang.org/go/cue"
)

// walkUser compares the user's value, field by field, with the schema: it
// finds the fields the schema does not know and the required fields that
// are missing. CUE reports both, but not reliably next to other errors in
// the same struct; walking the user's value alone cannot be stopped by
// them.
func (r *report) walkUser(user, schema cue.Value, path []string) {
	switch user.IncompleteKind() {
	case cue.StructKind:
		// A schema value found through a pattern (the #Pod of pods.api)
		// may evaluate to an error on its own: its kind says nothing.
		if k := schema.IncompleteKind(); k != cue.BottomKind && k&cue.StructKind == 0 {
			return
		}
		present := map[string]bool{}
		it, err := user.Fields()
		if err != nil {
			return
		}
		for it.Next() {
			name := it.Selector().Unquoted()
			present[name] = true
			p := append(path[:len(path):len(path)], name)
			if !allows(schema, name) {
				r.addNotAllowed(p, user.Pos())
				continue
			}
			r.walkUser(it.Value(), schemaField(schema, name), p)
		}
		it, err = schema.Fields(cue.Optional(true))
		if err != nil {
			return
		}
		for it.Next() {
			sel := it.Selector()
			if sel.ConstraintType() == cue.RequiredConstraint && !present[sel.Unquoted()] {
				r.addRequired(append(path[:len(path):len(path)], sel.Unquoted()), sel.Unquoted())
			}
		}
	case cue.ListKind:
		it, err := user.List()
		if err != nil {
			return
		}
		elem := schema.LookupPath(cue.MakePath(cue.AnyIndex))
		if !elem.Exists() {
			return
		}
		for i := 0; it.Next(); i++ {
			r.walkUser(it.Value(), elem, append(path[:len(path):len(path)], strconv.Itoa(i)))
		}
	}
}

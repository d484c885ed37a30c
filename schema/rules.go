package schema

import (
	"bytes"
	"fmt"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/ast/astutil"
	"cuelang.org/go/cue/format"
	"cuelang.org/go/cue/parser"
)

// The schema's rules that look at several fields of one struct (a pod
// needs a container, a probe names one action, a volume one source, a
// service's selector, endpoints and ports go together, a volumeMount names
// a volume of its pod) are comprehensions, and they were a third of the
// CPU time of checking a valid unit: every `if` evaluates its condition,
// every len() its list, every `declared[name]` its lookup, in every unit.
// A valid unit is therefore checked against the schema without them and
// the rules are checked in Go on the value (rulesHold), which costs a few
// lookups. Only a unit that breaks something takes the schema with its
// rules (Check's rounds), which words and positions every problem as
// before: the Go rules only decide whether that is needed, so they must
// never pass a unit that the comprehensions would fail (the tests hold both
// ways to the same verdict on every case of the schema's rules).

// withoutRules is Source without its comprehensions and let clauses,
// formatted once: each Checker compiles it from bytes, since an ast.File
// may be written to while it is compiled, and Checkers run concurrently.
var withoutRules = sync.OnceValues(func() ([]byte, error) {
	f, err := parser.ParseFile(Filename, Source)
	if err != nil {
		return nil, fmt.Errorf("parse the built-in schema: %w", err)
	}
	astutil.Apply(f, func(c astutil.Cursor) bool {
		switch c.Node().(type) {
		case *ast.Comprehension, *ast.LetClause:
			c.Delete()
			return false
		}
		return true
	}, nil)
	b, err := format.Node(f)
	if err != nil {
		return nil, fmt.Errorf("format the built-in schema without its rules: %w", err)
	}
	if bytes.Contains(b, []byte("#checked &&")) {
		return nil, fmt.Errorf("the built-in schema without its rules still has one")
	}
	return b, nil
})

// rulesHold reports whether v, a unit unified with the schema without its
// rules and found valid, keeps the rules too. It errs on the side of false:
// false only sends the unit the long way.
func rulesHold(v cue.Value) bool {
	return each(v, "pods", podHolds) && each(v, "services", serviceHolds)
}

func podHolds(p cue.Value) bool {
	// volumes is checked first: the volume mounts need its names.
	volumes := map[string]bool{}
	ok := each(p, "volumes", func(vol cue.Value) bool {
		name, _ := vol.Label()
		volumes[name] = true
		return count(vol, "emptyDir", "persistent", "hostPath", "files") == 1
	})
	containers := 0
	ok = ok && each(p, "containers", func(c cue.Value) bool {
		containers++
		if probe := field(c, "readinessProbe"); probe.Exists() && count(probe, "exec", "tcpSocket", "httpGet") != 1 {
			return false
		}
		mounts := field(c, "volumeMounts")
		if !mounts.Exists() {
			return true
		}
		it, err := mounts.List()
		if err != nil {
			return false
		}
		for it.Next() {
			if name, err := field(it.Value(), "name").String(); err != nil || !volumes[name] {
				return false
			}
		}
		return true
	})
	return ok && containers > 0
}

func serviceHolds(s cue.Value) bool {
	selector, endpoints := field(s, "selector"), field(s, "endpoints")
	switch {
	case selector.Exists() && endpoints.Exists():
		return false
	case selector.Exists():
		if n, ok := fieldCount(selector); !ok || n == 0 {
			return false
		}
	case endpoints.Exists():
		if n, err := endpoints.Len().Int64(); err != nil || n == 0 {
			return false
		}
	default:
		return false
	}
	ports := field(s, "ports")
	n, err := ports.Len().Int64()
	if err != nil || n == 0 || n > 1 && endpoints.Exists() {
		return false
	}
	if n == 1 {
		return true
	}
	it, err := ports.List()
	if err != nil {
		return false
	}
	for it.Next() {
		if !field(it.Value(), "name").Exists() {
			return false
		}
	}
	return true
}

// field is v's regular field name; it does not exist when the user did not
// write it (an optional field of the schema alone does not exist).
func field(v cue.Value, name string) cue.Value {
	return v.LookupPath(cue.MakePath(cue.Str(name)))
}

// count is how many of the fields names v has.
func count(v cue.Value, names ...string) int {
	n := 0
	for _, name := range names {
		if field(v, name).Exists() {
			n++
		}
	}
	return n
}

// fieldCount is the number of v's regular fields.
func fieldCount(v cue.Value) (int, bool) {
	it, err := v.Fields()
	if err != nil {
		return 0, false
	}
	n := 0
	for it.Next() {
		n++
	}
	return n, true
}

// each calls f with every regular field of v's field name, if it has one,
// until f returns false. It reports whether f held for all.
func each(v cue.Value, name string, f func(cue.Value) bool) bool {
	m := field(v, name)
	if !m.Exists() {
		return true
	}
	it, err := m.Fields()
	if err != nil {
		return false
	}
	for it.Next() {
		if !f(it.Value()) {
			return false
		}
	}
	return true
}

package schema

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"
)

// report turns CUE's errors into issues: one per broken rule, worded for a
// person, positioned in the user's file.
type report struct {
	// places is the index of the user's syntax, built by positions when
	// the first issue needs it: a valid unit needs none.
	places places
	syntax []*ast.File
	schema cue.Value // #Manifest
	user   cue.Value // the user's files alone
	issues []Issue
	seen   map[string]bool
	// checks marks the issues of the schema's comprehension rules with
	// the rule's check field (see consequences).
	checks map[int]string

	// removable holds the labels and paths of fields found wrong in this
	// round; removed the paths of fields taken out in earlier rounds.
	removable map[token.Pos]string
	removed   []string
}

// positions indexes the user's syntax on first use. The first issue comes
// in the first round, before takeOut changes the syntax.
func (r *report) positions() places {
	if r.places == nil {
		r.places = indexFiles(r.syntax)
	}
	return r.places
}

// where an issue points: the value the user wrote, or the label of the
// field (or of the nearest enclosing field the user wrote).
type anchor int

const (
	atValue anchor = iota
	atLabel
)

func (r *report) add(path []string, at anchor, fallback token.Pos, msg string) {
	check := ""
	if n := len(path); n > 0 && ruleFields[path[n-1]] != nil {
		check = path[n-1]
	}
	path, at = checkField(path, at)
	p := formatPath(path)
	for _, gone := range r.removed {
		if p == gone || strings.HasPrefix(p, gone+".") {
			return
		}
	}
	key := p + "\x00" + msg
	if r.seen[key] {
		return
	}
	r.seen[key] = true
	pos := fallback
	pl, exact := r.positions().find(path)
	if pl.label.IsValid() {
		pos = pl.label
		if exact && at == atValue {
			pos = pl.value
		}
	}
	// A field the user wrote and that has an issue can be taken out for
	// the next round; list elements cannot (the ones after would move).
	if exact && pl.label != pl.value {
		r.removable[pl.label] = p
	}
	if check != "" {
		r.checks[len(r.issues)] = check
	}
	r.issues = append(r.issues, Issue{Pos: pos.Position(), Path: p, Message: msg})
}

// checkField maps the schema's check fields (#name, #containers, #action,
// #source, #selectorOrEndpoints, #ports, #unnamed; see the schema's header)
// to the field they are about: the enclosing one, at its label.
func checkField(path []string, at anchor) ([]string, anchor) {
	if n := len(path); n > 0 && strings.HasPrefix(path[n-1], "#") {
		return path[:n-1], atLabel
	}
	return path, at
}

func (r *report) addRequired(path []string, name string) {
	r.add(path, atLabel, token.NoPos, name+" is required")
}

// addErr adds the issues of err. Errors come in groups by path; a failed
// disjunction is a header followed by one error per alternative, of which
// the one that fits best is reported.
func (r *report) addErr(err error) {
	var order []string
	groups := map[string][]errors.Error{}
	for _, e := range errors.Errors(err) {
		k := formatPath(errPath(e))
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	for _, k := range order {
		r.addGroup(groups[k])
	}
}

// ruleFields names, for each check field of the schema's comprehension
// rules, the fields the rule looks at. A wrong value in one of them makes
// `x != _|_` false, so the rule misfires; see consequences.
var ruleFields = map[string][]string{
	"#containers":          {"containers"},
	"#action":              {"exec", "tcpSocket", "httpGet"},
	"#source":              {"emptyDir", "persistent", "hostPath", "files"},
	"#selectorOrEndpoints": {"selector", "endpoints"},
	"#ports":               {"ports", "endpoints"},
	"#unnamed":             {"name"},
}

// consequences drops the issues of comprehension rules whose fields have
// an issue of their own, or lost a field between rounds: the issue inside
// is the one to fix, the rule's may only follow from it.
func (r *report) consequences() {
	out := r.issues[:0]
	for i, is := range r.issues {
		if check := r.checks[i]; check != "" && r.hasInside(is.Path, ruleFields[check]) {
			continue
		}
		out = append(out, is)
	}
	r.issues = out
	clear(r.checks)
}

func (r *report) hasInside(p string, fields []string) bool {
	under := func(q string) bool {
		for _, f := range fields {
			if prefix := p + "." + formatPath([]string{f}); q == prefix || strings.HasPrefix(q, prefix+".") {
				return true
			}
		}
		return false
	}
	for _, is := range r.issues {
		if under(is.Path) {
			return true
		}
	}
	for _, gone := range r.removed {
		if under(gone) {
			return true
		}
	}
	return false
}

// kinds of CUE error message, from least to most telling.
type kind int

const (
	kindHeader   kind = iota // "N errors in empty disjunction:"
	kindConflict             // two concrete values differ
	kindMismatch             // a value of the wrong type
	kindOther                // a bound, a pattern, a validator, a custom error
)

type cueErr struct {
	err  errors.Error
	kind kind
	msg  string
	a, b string // the two sides of a conflict
	ta   string // the types of a mismatch, as "int and string"
}

var (
	reConflict = regexp.MustCompile(`^conflicting values (.+?) and (.+?)(?: \(mismatched types (\w+) and (\w+)\))?$`)
	reBound    = regexp.MustCompile(`^invalid value (.+) \(out of bound (<=|>=|<|>|!=|=~|!~)(.+)\)$`)
	reImport   = regexp.MustCompile(`^package "(.+)" imported but not defined in.*$`)
	reLengths  = regexp.MustCompile(`^incompatible list lengths \((\d+) and (\d+)\)$`)
	reValidate = regexp.MustCompile(`^invalid value (.+) \(does not satisfy ([\w.]+)(?:\((.*)\))?\)(?:: .*)?$`)
)

func classify(e errors.Error) cueErr {
	format, args := e.Msg()
	msg := fmt.Sprintf(format, args...)
	c := cueErr{err: e, kind: kindOther, msg: msg}
	switch {
	case strings.HasSuffix(format, "errors in empty disjunction:"):
		c.kind = kindHeader
	case strings.HasPrefix(msg, "conflicting values "):
		if m := reConflict.FindStringSubmatch(msg); m != nil {
			c.a, c.b = m[1], m[2]
			c.kind = kindConflict
			if m[3] != "" {
				c.kind = kindMismatch
				c.ta = m[3] + " " + m[4]
			}
		}
	}
	return c
}

func (r *report) addGroup(group []errors.Error) {
	var errs []cueErr
	disjunction := false
	for _, e := range group {
		c := classify(e)
		if c.kind == kindHeader {
			disjunction = true
			continue
		}
		errs = append(errs, c)
	}
	if len(errs) == 0 {
		return
	}
	path := errPath(group[0])
	if !disjunction {
		for _, c := range errs {
			r.addOne(path, c)
		}
		return
	}
	best := errs[0]
	for _, c := range errs[1:] {
		if c.kind > best.kind {
			best = c
		}
	}
	if best.kind == kindOther {
		r.addOne(path, best)
		return
	}
	// Every alternative conflicts with the value: when they are all
	// literals, the field is a choice among them.
	if choices, ok := r.choices(path, errs); ok {
		r.add(path, atValue, userPos(best.err), fmt.Sprintf("%s is not one of %s", r.userText(path), strings.Join(choices, ", ")))
		return
	}
	r.addOne(path, best)
}

// choices returns the literals that the user's value conflicts with.
func (r *report) choices(path []string, errs []cueErr) ([]string, bool) {
	mine := r.userText(path)
	var out []string
	for _, c := range errs {
		other := c.a
		if other == mine {
			other = c.b
		}
		// 2e9999 against 1 and int: not a choice among literals.
		if !isLiteral(other) || other == mine || slices.Contains(out, other) {
			return nil, false
		}
		out = append(out, other)
	}
	return out, len(out) > 1
}

func isLiteral(s string) bool {
	if s == "true" || s == "false" || s == "null" {
		return true
	}
	if strings.HasPrefix(s, `"`) {
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func (r *report) addOne(path []string, c cueErr) {
	fallback := userPos(c.err)
	format, args := c.err.Msg()
	switch {
	case format == "field not allowed":
		r.addNotAllowed(path, fallback)
	case format == "field is required but not present":
		r.add(path, atLabel, fallback, last(path)+" is required")
	case format == "required field missing: %s":
		name := fmt.Sprint(args...)
		r.addRequired(append(path[:len(path):len(path)], name), name)
	case strings.HasPrefix(format, "incomplete value"):
		// Only a value the user wrote, like `image: string`: a field
		// the user left to a default is incomplete because of another
		// problem (targetPort: *port when port is wrong).
		if _, exact := r.positions().find(path); exact {
			r.add(path, atValue, fallback, fmt.Sprintf("%s needs a concrete value, not %s", last(path), r.userText(path)))
		}
	case strings.HasPrefix(c.msg, "import ") && strings.HasSuffix(c.msg, " not found"):
		// A use of an import that failed: the import itself is reported.
	case c.kind == kindMismatch:
		r.add(path, atValue, fallback, r.mismatch(path, c))
	case c.kind == kindConflict:
		r.add(path, atValue, fallback, fmt.Sprintf("conflicting values %s and %s", c.a, c.b))
	default:
		r.add(path, atValue, fallback, r.reword(path, c.msg))
	}
}

func last(path []string) string {
	if len(path) == 0 {
		return "value"
	}
	return path[len(path)-1]
}

// mismatch words a value of the wrong type: `"two" is not an integer`.
func (r *report) mismatch(path []string, c cueErr) string {
	mine := r.userText(path)
	types := strings.Fields(c.ta)
	if len(types) == 2 { // "int string"
		want := types[0]
		if k := r.userKind(path); k != "" && k == want {
			want = types[1]
		}
		return fmt.Sprintf("%s is not %s", mine, article(want))
	}
	return fmt.Sprintf("conflicting values %s and %s", c.a, c.b)
}

func article(typ string) string {
	switch typ {
	case "int":
		return "an integer"
	case "float", "number":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "list":
		return "a list"
	case "struct":
		return "a struct"
	case "null":
		return "null"
	}
	return typ
}

// Patterns of the schema, described for a person.
var patterns = map[string]string{
	`"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"`: "is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit",
	`"^[A-Za-z_][A-Za-z0-9_]*$"`:        "is not a valid environment variable name: must be letters, digits and '_', not starting with a digit",
	`"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"`:  "is not a valid memory quantity: must be a whole number of bytes, optionally with a suffix Ki, Mi, Gi, Ti, k, M, G or T",
	`"^/"`:                              "is not an absolute path",
	`"^[^:]+:[0-9]+$"`:                  "is not a valid endpoint: must be HOST:PORT",
}

// fileNameRule says what a files volume's key must be (#FileName).
const fileNameRule = `is not a valid file name: must not be empty, ".", ".." or contain '/'`

// reword turns bound and validator errors into sentences.
func (r *report) reword(path []string, msg string) string {
	if m := reBound.FindStringSubmatch(msg); m != nil {
		val, op, lim := m[1], m[2], m[3]
		switch op {
		case "<=":
			return fmt.Sprintf("%s is above the maximum %s", val, lim)
		case ">=":
			return fmt.Sprintf("%s is below the minimum %s", val, lim)
		case "<":
			return fmt.Sprintf("%s must be less than %s", val, lim)
		case ">":
			return fmt.Sprintf("%s must be greater than %s", val, lim)
		case "!=":
			if lim == `""` {
				return last(path) + " must not be empty"
			}
			return fmt.Sprintf("%s is not allowed", val)
		case "=~":
			if d, ok := patterns[lim]; ok {
				return val + " " + d
			}
			return fmt.Sprintf("%s does not match %s", val, lim)
		}
	}
	if m := reImport.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("import %q is not available: a manifest may import only CUE's standard library", m[1])
	}
	if m := reLengths.FindStringSubmatch(msg); m != nil {
		if m[2] == "1" {
			return last(path) + " must not be empty"
		}
		return fmt.Sprintf("%s has %s elements, needs %s", last(path), m[1], m[2])
	}
	if m := reValidate.FindStringSubmatch(msg); m != nil {
		val, fn, arg := m[1], m[2], m[3]
		switch fn {
		case "strings.MaxRunes":
			return fmt.Sprintf("%s is too long: at most %s characters", val, arg)
		case "net.IPv4":
			return fmt.Sprintf("%s is not an IPv4 address", val)
		}
	}
	return msg
}

// addNotAllowed reports a field the schema does not know, suggesting the
// closest one it does. CUE may name a field below the unknown one (for
// `containerz: a: {...}` it names containerz.a), so find the first label
// that the schema does not allow where it stands.
func (r *report) addNotAllowed(path []string, fallback token.Pos) {
	v := r.schema
	for i, name := range path {
		if !allows(v, name) {
			path = path[:i+1]
			msg := fmt.Sprintf("field %q is not allowed", name)
			if s := suggest(name, allowedFields(v)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			r.add(path, atLabel, fallback, msg)
			return
		}
		v = schemaField(v, name)
		if !v.Exists() {
			break
		}
	}
	if n := len(path); n > 3 && path[n-2] == "files" && path[n-4] == "volumes" {
		// A files volume's keys are file names inside the volume's folder.
		r.add(path, atLabel, fallback, strconv.Quote(last(path))+" "+fileNameRule)
		return
	}
	if len(path) > 1 && path[len(path)-2] == "env" {
		// env's keys follow a pattern; say which.
		r.add(path, atLabel, fallback, strconv.Quote(last(path))+" "+patterns[`"^[A-Za-z_][A-Za-z0-9_]*$"`])
		return
	}
	r.add(path, atLabel, fallback, fmt.Sprintf("field %q is not allowed", last(path)))
}

// schemaField is the schema of field name of v: the field itself, or the
// pattern that a map's keys and a list's elements follow.
func schemaField(v cue.Value, name string) cue.Value {
	if _, err := strconv.Atoi(name); err == nil && v.LookupPath(cue.MakePath(cue.AnyIndex)).Exists() {
		return v.LookupPath(cue.MakePath(cue.AnyIndex))
	}
	if f := v.LookupPath(cue.MakePath(cue.Str(name))); f.Exists() {
		return f
	}
	if f := v.LookupPath(cue.MakePath(cue.Str(name).Optional())); f.Exists() {
		return f
	}
	return v.LookupPath(cue.MakePath(cue.AnyString))
}

// allows reports whether the schema v has a field name or a pattern for
// its keys. (Value.Allows does not see the closedness of a value looked up
// through a pattern.)
func allows(v cue.Value, name string) bool {
	declared := allowedFields(v)
	if len(declared) == 0 {
		// A map whose keys follow a pattern other than string (env):
		// CUE itself reports a key that does not match.
		return true
	}
	if _, err := strconv.Atoi(name); err == nil && v.LookupPath(cue.MakePath(cue.AnyIndex)).Exists() {
		return true
	}
	return v.LookupPath(cue.MakePath(cue.AnyString)).Exists() || slices.Contains(declared, name)
}

// allowedFields lists the regular fields that the schema v declares.
func allowedFields(v cue.Value) []string {
	it, err := v.Fields(cue.Optional(true))
	if err != nil {
		return nil
	}
	var out []string
	for it.Next() {
		out = append(out, it.Selector().Unquoted())
	}
	return out
}

// selectorPath builds a cue.Path from plain labels; numeric labels are list
// indexes (no map of the schema has numeric keys worth looking up).
func selectorPath(path []string) cue.Path {
	sels := make([]cue.Selector, 0, len(path)+1)
	for _, s := range path {
		if i, err := strconv.Atoi(s); err == nil && i >= 0 {
			sels = append(sels, cue.Index(i))
			continue
		}
		if strings.HasPrefix(s, "#") {
			sels = append(sels, cue.Def(s))
			continue
		}
		sels = append(sels, cue.Str(s))
	}
	return cue.MakePath(sels...)
}

// userText renders the user's value at path as CUE writes it.
func (r *report) userText(path []string) string {
	v := r.user.LookupPath(selectorPath(path))
	if !v.Exists() {
		return "the value"
	}
	switch v.IncompleteKind() {
	case cue.StructKind:
		return "a struct"
	case cue.ListKind:
		return "a list"
	}
	return fmt.Sprint(v)
}

func (r *report) userKind(path []string) string {
	v := r.user.LookupPath(selectorPath(path))
	if !v.Exists() {
		return ""
	}
	return v.IncompleteKind().String()
}

// userPos is the position of err in the user's files, if it has one: a
// fallback for fields the syntax walk cannot see (built by a comprehension).
func userPos(e errors.Error) token.Pos {
	for _, p := range append([]token.Pos{e.Position()}, e.InputPositions()...) {
		if p.IsValid() && p.Filename() != Filename {
			return p
		}
	}
	return token.NoPos
}

// suggest returns the candidate closest to name, if it is close enough to
// be a misspelling.
func suggest(name string, candidates []string) string {
	best, bestD := "", len(name)/2+1
	for _, c := range candidates {
		if c == name {
			continue
		}
		if d := distance(strings.ToLower(name), strings.ToLower(c)); d < bestD || (d == bestD && best != "" && c < best) {
			best, bestD = c, d
		}
	}
	if bestD > 2 && bestD > len(name)/3 {
		return ""
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

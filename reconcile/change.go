package reconcile

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
)

// Change is one field that differs between what runs (or was applied) and
// what the manifests want: what a `~` line of the plan changes, old → new,
// as kubectl diff and terraform plan show it. Old and New are the values
// as the manifests write them (strings, numbers, lists, objects); nil is
// "not set".
type Change struct {
	// Field is the path of the field under the pod (or service) definition:
	// "image" of container app is "containers.app.image", an env variable
	// "containers.app.env.GREETING".
	Field string `json:"field"`
	Old   any    `json:"old"`
	New   any    `json:"new"`
}

// String is the plan's text for the change:
// `containers.app.image: "busybox:1" → "busybox:2"`; an unset value is <none>.
func (c Change) String() string {
	return c.Field + ": " + changeValue(c.Old) + " → " + changeValue(c.New)
}

func changeValue(v any) string {
	if v == nil {
		return "<none>"
	}
	if rv := reflect.ValueOf(v); (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) && rv.IsNil() {
		return "<none>"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

// AppendChange adds a change of field when old and new differ; nil, empty
// lists and maps, "" and 0 are all "not set" (a bool false is a value).
func AppendChange(out []Change, field string, old, new any) []Change {
	if reflect.DeepEqual(old, new) || (isEmpty(old) && isEmpty(new)) {
		return out
	}
	return append(out, Change{Field: field, Old: noneIfEmpty(old), New: noneIfEmpty(new)})
}

// AppendMapChanges adds a change per key of field that differs, in key order.
func AppendMapChanges(out []Change, field string, old, new map[string]string) []Change {
	keys := slices.Sorted(maps.Keys(old))
	for k := range new {
		if _, ok := old[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		o, inOld := old[k]
		n, inNew := new[k]
		switch {
		case inOld && inNew && o == n:
		case !inOld:
			out = append(out, Change{Field: field + "." + k, New: n})
		case !inNew:
			out = append(out, Change{Field: field + "." + k, Old: o})
		default:
			out = append(out, Change{Field: field + "." + k, Old: o, New: n})
		}
	}
	return out
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map:
		return rv.Len() == 0
	case reflect.Pointer:
		return rv.IsNil()
	case reflect.String, reflect.Int, reflect.Int64, reflect.Float64:
		// An empty working directory, a memory limit of 0: not set.
		return rv.IsZero()
	}
	return false
}

func noneIfEmpty(v any) any {
	if isEmpty(v) {
		return nil
	}
	return v
}

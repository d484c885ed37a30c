package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
)

// The manifest's maps, as the unified value has them; decode turns them
// into the model's sorted slices.
type (
	rawManifest struct {
		Pods     map[string]rawPod  `json:"pods"`
		Services map[string]Service `json:"services"`
	}
	rawPod struct {
		Pod
		Containers map[string]Container `json:"containers"`
		Volumes    map[string]Volume    `json:"volumes"`
	}
)

// decode turns a unit's value, unified with #Manifest and valid, into the
// model. The schema has filled in every default, so JSON carries it all.
func decode(v cue.Value) (Manifest, error) {
	// MarshalJSON and encoding/json are faster here than Value.Decode.
	b, err := v.MarshalJSON()
	if err != nil {
		return Manifest{}, fmt.Errorf("export the unit: %w", err)
	}
	var raw rawManifest
	if err := json.Unmarshal(b, &raw); err != nil {
		return Manifest{}, fmt.Errorf("decode the unit: %w", err)
	}
	var m Manifest
	for _, name := range slices.Sorted(maps.Keys(raw.Pods)) {
		rp := raw.Pods[name]
		p := rp.Pod
		p.Name = name
		for _, cn := range slices.Sorted(maps.Keys(rp.Containers)) {
			c := rp.Containers[cn]
			c.Name = cn
			if c.Resources.Memory != "" {
				n, err := ParseMemory(c.Resources.Memory)
				if err != nil {
					return Manifest{}, &fieldError{path: []string{"pods", name, "containers", cn, "resources", "memory"}, err: err}
				}
				c.Resources.MemoryBytes = n
			}
			p.Containers = append(p.Containers, c)
		}
		for _, vn := range slices.Sorted(maps.Keys(rp.Volumes)) {
			vol := rp.Volumes[vn]
			vol.Name = vn
			p.Volumes = append(p.Volumes, vol)
		}
		m.Pods = append(m.Pods, p)
	}
	for _, name := range slices.Sorted(maps.Keys(raw.Services)) {
		s := raw.Services[name]
		s.Name = name
		m.Services = append(m.Services, s)
	}
	return m, nil
}

// memoryUnits are the suffixes a memory quantity may carry, as in
// Kubernetes: binary (Ki, Mi, ...) and decimal (k, M, ...).
var memoryUnits = map[string]int64{
	"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ParseMemory turns a quantity such as "256Mi" into bytes.
func ParseMemory(q string) (int64, error) {
	i := strings.IndexFunc(q, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(q)
	}
	unit, ok := memoryUnits[q[i:]]
	if !ok || i == 0 {
		return 0, fmt.Errorf("%q is not a memory quantity", q)
	}
	n, err := strconv.ParseInt(q[:i], 10, 64)
	if err != nil || n > (1<<63-1)/unit {
		return 0, fmt.Errorf("%q is too large", q)
	}
	return n * unit, nil
}

// fieldError is a problem found while decoding, at a field of the unit.
type fieldError struct {
	path []string
	err  error
}

func (e *fieldError) Error() string { return e.err.Error() }

// Package bench holds the validate benchmark: 1,000 units, each a pod
// with two containers and a service, in one folder (see docs/performance.md).
package bench

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// Write writes n units into dir, one file each, without a package clause
// (so that each file is a unit of its own).
func Write(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		name := filepath.Join(dir, fmt.Sprintf("unit-%04d.cue", i))
		if err := os.WriteFile(name, fmt.Appendf(nil, unit, i, 30000+i), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// unit is one unit's text, with the unit's number (%[1]d) and its external
// port (%[2]d) to fill in. It is a file of its own so that the manifests
// package's tests, which this package cannot be imported into, read the
// same unit.
//
//go:embed unit.cue.tmpl
var unit string

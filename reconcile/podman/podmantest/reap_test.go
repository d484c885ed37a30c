package podmantest

import (
	"os"
	"path/filepath"
	"testing"
)

// A dir whose owner file is still empty (created, not yet written: what
// another process sees in the middle of os.WriteFile) is being set up and
// must survive reapStale; one whose owner is a dead process must not.
func TestReapStaleSparesADirBeingSetUp(t *testing.T) {
	setup, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(setup)
	if err := os.WriteFile(filepath.Join(setup, ownerFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dead, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dead)
	if err := os.WriteFile(filepath.Join(dead, ownerFile), []byte("999999999 1"), 0o644); err != nil {
		t.Fatal(err)
	}

	reapStale()

	if _, err := os.Stat(setup); err != nil {
		t.Errorf("dir being set up was reaped: %v", err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dir of a dead owner was not reaped: %v", err)
	}
}

package agenttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of a cuelet binary: $CUELET_BIN when set (the
// benchmark script passes bin/cuelet), else one built from this module
// with `go build` on first use, once per test process. Main removes it.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CUELET_BIN"); p != "" {
		return p
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "cuelet-bin-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "cuelet")
		// GOFLAGS (set by the Makefile and by `go env` on the project's
		// machines) carries the podman bindings' build tags.
		cmd := exec.Command("go", "build", "-o", build.path, "github.com/cuelet/cuelet/cmd/cuelet")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build cuelet: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.path
}

// Main runs the tests and removes the binary Binary built; call it from
// TestMain: os.Exit(agenttest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

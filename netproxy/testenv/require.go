package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Require returns when missing is nil. Otherwise it skips the test, or,
// when CI is set, fails it: .ci/run sets CI=true, and there a skipped
// end-to-end test would hide a broken setup behind a green run.
func Require(tb testing.TB, missing error) {
	tb.Helper()
	if missing == nil {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("CI is set, so this test may not skip: %v", missing)
		return // for a TB whose Fatalf returns, like the tests' recorder
	}
	tb.Skipf("skipped: %v", missing)
}

// RequireRoot is Require for tests that program the kernel (netlink,
// nftables, network namespaces) or run rootful podman.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	Require(tb, Root())
}

// Root reports why this process cannot do what root does, or nil.
func Root() error {
	if os.Geteuid() != 0 {
		return errors.New("the test needs root")
	}
	return nil
}

// RequireCommand is Require for a program on PATH; it returns the
// program's path.
func RequireCommand(tb testing.TB, name string) string {
	tb.Helper()
	Require(tb, Command(name))
	path, _ := exec.LookPath(name)
	return path
}

// Command reports why the program name cannot be run, or nil.
func Command(name string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s not installed: %w", name, err)
	}
	return nil
}

package testenv

import (
	"errors"
	"fmt"
	"testing"
)

// recorder is a testing.TB that notes Fatalf and Skipf instead of ending
// the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.fatal = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
}

func TestRequire_skips_or_fails_by_CI_and_passes_what_is_there(t *testing.T) {
	missing := errors.New("podman not installed")
	for _, tt := range []struct {
		name, ci    string
		missing     error
		fatal, skip string
	}{
		{name: "nothing_missing_neither_skips_nor_fails", ci: "true"},
		{name: "missing_without_CI_skips", missing: missing, skip: "skipped: podman not installed"},
		{name: "missing_with_CI_fails", ci: "true", missing: missing, fatal: "CI is set, so this test may not skip: podman not installed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			Require(r, tt.missing)
			if r.fatal != tt.fatal || r.skip != tt.skip {
				t.Fatalf("fatal %q, skip %q; want fatal %q, skip %q", r.fatal, r.skip, tt.fatal, tt.skip)
			}
		})
	}
}

func TestCommand_names_a_program_that_is_not_on_PATH(t *testing.T) {
	if err := Command("sh"); err != nil {
		t.Fatalf("sh: %v", err)
	}
	if err := Command("cuelet-no-such-program"); err == nil {
		t.Fatal("a missing program was found")
	}
}

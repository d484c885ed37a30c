package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func validateCommand(env *Env) *cobra.Command {
	var (
		dir    string
		rules  NodeRules
		git    GitFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check manifests against the schema and the node's rules",
		Long: `Validate manifest files or folders (default: the manifest directory)
against the built-in schema and the node's rules. Needs neither podman nor
root. Prints one line per problem, FILE:LINE:COL: PATH: MESSAGE, on stderr,
or with --json an array of {file, line, column, path, message} on stdout.
Exits 1 if anything is invalid.`,
		RunE: func(cmd *cobra.Command, paths []string) error {
			ctx := cmd.Context()
			defer collectLessOften()()
			l, err := loadUnits(ctx, &rules, &git, dir, paths)
			if err != nil {
				return err
			}
			problems := l.problems
			if asJSON {
				b, err := json.MarshalIndent(problems, "", "  ")
				if err != nil {
					return fmt.Errorf("encode problems: %w", err)
				}
				fmt.Fprintf(env.Stdout, "%s\n", b)
			} else {
				for _, p := range problems {
					fmt.Fprintln(env.Stderr, p)
				}
			}
			if len(problems) > 0 {
				return errInvalid
			}
			return nil
		},
	}
	fs := flagsOf(cmd)
	registerManifests(fs, &dir)
	git.Register(fs)
	rules.Register(fs)
	fs.BoolVar(&asJSON, "json", false, "print problems as a JSON array on stdout")
	return cmd
}

// collectLessOften tunes the garbage collector for a validation and
// returns what restores the settings (the CLI also runs inside tests).
// Checking allocates about 0.45 MB per unit but keeps little (4 MB for
// the 1,000 units of manifests/bench once checked): collecting at
// GOGC=400 takes a third less CPU time than the default. The memory limit
// keeps the heap small all the same: under 64 MiB the collector runs as
// GOGC=400 says, near it as often as it must, and the process (30 MB
// before the heap) stays under 100 MB. GOGC and GOMEMLIMIT in the
// environment win.
func collectLessOften() (restore func()) {
	gc, limit := -2, int64(-1)
	if os.Getenv("GOGC") == "" {
		gc = debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit = debug.SetMemoryLimit(64 << 20)
	}
	return func() {
		if gc != -2 {
			debug.SetGCPercent(gc)
		}
		if limit >= 0 {
			debug.SetMemoryLimit(limit)
		}
	}
}

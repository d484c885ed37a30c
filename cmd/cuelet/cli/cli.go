// Package cli is cuelet's command line: one file per subcommand, run
// in-process by the testscript tests. The commands are cobra commands
// with pflag flags, as in podman, kubectl, cue and helm, so that their
// users find --flags, `cuelet help CMD`, shell completion and man pages
// where they expect them.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Env is what a command may touch outside itself, so that tests can run
// it in-process.
type Env struct {
	Stdin          io.Reader // nil reads as empty
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// StderrIsTerminal picks the default log format.
	StderrIsTerminal bool
	// Now is the clock that ages are counted on; nil is time.Now.
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

// commands lists the subcommands, in the order help shows them. A new
// subcommand is a file with a function returning its *cobra.Command,
// added here.
func commands(env *Env) []*cobra.Command {
	return []*cobra.Command{
		validateCommand(env),
		planCommand(env),
		applyCommand(env),
		runCommand(env),
		exportCommand(env),
		importCommand(env),
		statusCommand(env),
		describeCommand(env),
		logsCommand(env),
		schemaCommand(env),
		versionCommand(env),
	}
}

// errInvalid is returned by a command that has already told the user what
// is wrong (problems on stderr, or an array on stdout): exit 1, say no more.
var errInvalid = errors.New("invalid input")

// exitError carries an exit code other than 1, such as plan's 2.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// usageError is a mistake in the command line itself (an unknown flag or
// command, a bad flag value): the user is pointed at the help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Main runs cuelet with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, StderrIsTerminal: isTerminal(os.Stderr)}
	return Run(ctx, env, os.Args[1:])
}

func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// NewCommand is the whole command tree: the subcommands, and the help and
// completion commands cobra adds, so that the man pages (cmd/cuelet/mangen)
// see them too. Run executes it; only the man page generator needs it.
func NewCommand(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "cuelet",
		Short: "Keep a podman host's pods and services equal to CUE manifests",
		Long: `cuelet keeps a podman host's pods and services equal to CUE manifests,
as a kubelet keeps a node's pods equal to what the cluster asks for: pods
through podman's API, services as virtual IP addresses (portals) on the
node, with endpoints, DNS names and environment variables for the pods.`,
		Version: versionString(),
		// Without a command, the usage goes to stderr and the exit code is
		// 1, as podman does: a script that forgot the command fails.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q%s", args[0], suggest(cmd, args[0]))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
			return errInvalid
		},
		SilenceErrors:              true, // Run prints them, with the exit code they need
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
		CompletionOptions:          cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetVersionTemplate("cuelet {{.Version}}\n")
	// The root runs only to refuse a missing command: its usage shows
	// "cuelet [command]", not a "cuelet [flags]" that would do nothing.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable .HasParent}}", 1))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, c := range commands(env) {
		root.AddCommand(c)
	}
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.SetIn(orEmpty(env.Stdin))
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	return root
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return strings.NewReader("")
	}
	return r
}

// suggest is cobra's "did you mean" for a mistyped command, if any.
func suggest(root *cobra.Command, typed string) string {
	s := root.SuggestionsFor(typed)
	if len(s) == 0 {
		return ""
	}
	return "; did you mean " + strings.Join(s, " or ") + "?"
}

// Run runs one cuelet command line (without the program name).
func Run(ctx context.Context, env *Env, args []string) int {
	root := NewCommand(env)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	var exit exitError
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	case errors.Is(err, errInvalid):
		return 1
	case errors.As(err, &usage):
		fmt.Fprintf(env.Stderr, "%s: %v\n", cmd.CommandPath(), err)
		if hint := singleDashHint(cmd, args); hint != "" {
			fmt.Fprintln(env.Stderr, hint)
		}
		fmt.Fprintf(env.Stderr, "See '%s --help'.\n", cmd.CommandPath())
		return 1
	default:
		fmt.Fprintf(env.Stderr, "%s: %v\n", cmd.CommandPath(), err)
		return 1
	}
}

// singleDashHint explains a long flag given with one dash, which the flag
// package of Go accepted and pflag reads as a group of one-letter flags.
func singleDashHint(cmd *cobra.Command, args []string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if cmd.Flags().Lookup(name) != nil {
			return fmt.Sprintf("Long flags take two dashes: --%s.", name)
		}
	}
	return ""
}

// noArgs is for the commands that take flags only.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("takes no arguments, got %q", args)}
	}
	return nil
}

// flagsOf is a command's flag set, sorted in the order flags were added:
// the related ones stay together in the help.
func flagsOf(cmd *cobra.Command) *pflag.FlagSet {
	fs := cmd.Flags()
	fs.SortFlags = false
	return fs
}

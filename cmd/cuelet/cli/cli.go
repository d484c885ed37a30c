// Package cli is cuelet's command line: one file per subcommand, run
// in-process by the testscript tests.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Env is what a command may touch outside itself, so that tests can run
// it in-process.
type Env struct {
	Stdin          io.Reader // nil reads as empty
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// StderrIsTerminal picks the default log format.
	StderrIsTerminal bool
}

// Command is one subcommand. Setup registers its flags on fs and returns
// the function that runs it with the arguments left after the flags.
type Command struct {
	Name  string
	Args  string // shown in usage, e.g. "[PATH...]"
	Short string
	Setup func(fs *flag.FlagSet, env *Env) func(ctx context.Context, args []string) error
}

// commands lists the subcommands, in the order help shows them. A new
// subcommand is a file with a function returning its *Command, added here.
func commands() []*Command {
	return []*Command{
		validateCommand(),
		planCommand(),
		applyCommand(),
		runCommand(),
		exportCommand(),
		importCommand(),
		statusCommand(),
		schemaCommand(),
		versionCommand(),
	}
}

// errInvalid is returned by a command that has already told the user what
// is wrong (problems on stderr, or an array on stdout): exit 1, say no more.
var errInvalid = errors.New("invalid input")

// exitError carries an exit code other than 1, such as plan's 2.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

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

// Run runs one cuelet command line (without the program name).
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr)
		if len(args) == 0 {
			return 1
		}
		return 0
	}
	var cmd *Command
	for _, c := range commands() {
		if c.Name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(env.Stderr, "cuelet: unknown command %q\n", args[0])
		usage(env.Stderr)
		return 1
	}
	fs := flag.NewFlagSet("cuelet "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: cuelet %s [flags] %s\n\n%s\n\nflags:\n", cmd.Name, cmd.Args, cmd.Short)
		fs.PrintDefaults()
	}
	run := cmd.Setup(fs, env)
	rest, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 1 // flag has printed the error and the usage
	}
	err = run(ctx, rest)
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	case errors.Is(err, errInvalid):
		return 1
	default:
		fmt.Fprintf(env.Stderr, "cuelet %s: %v\n", cmd.Name, err)
		return 1
	}
}

// parseInterspersed parses flags wherever they stand among the arguments,
// as most command lines allow (`cuelet validate examples/ --json`); the
// standard flag package stops at the first argument. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			return append(rest, left...), nil
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "cuelet keeps a podman host's pods and services equal to CUE manifests.\n\nusage: cuelet COMMAND [flags] [args]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, firstLine(c.Short))
	}
	fmt.Fprintf(w, "\nRun 'cuelet COMMAND -h' for a command's flags.\n")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

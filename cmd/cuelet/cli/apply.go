package cli

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/agent"
)

func applyCommand(env *Env) *cobra.Command {
	return agentCommand(env, &cobra.Command{
		Use:   "apply",
		Short: "Run one reconcile pass against podman, then exit",
		Long: `Run one reconcile pass and exit: allocate portals, keep them on the
node, write the env files and make podman's pods what the valid units say.
Prints what it did; exits 1 if a unit is invalid or anything failed. The
portals are served only while 'cuelet run' runs.`,
	}, nil, func(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error {
		o, cleanup, err := f.oneShotOptions(ctx, log)
		defer cleanup()
		if err != nil {
			return err
		}
		rep, err := agent.Apply(ctx, o)
		if err != nil {
			return err
		}
		for _, a := range rep.Actions {
			fmt.Fprintln(env.Stdout, a)
		}
		printProblems(env.Stderr, rep.Units)
		for _, e := range rep.Errors {
			fmt.Fprintf(env.Stderr, "cuelet apply: %s\n", e)
		}
		if failed(rep) {
			return errInvalid
		}
		return nil
	})
}

package cli

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/agent"
)

func planCommand(env *Env) *cobra.Command {
	return agentCommand(env, &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change, changing nothing",
		Long: `Show what apply would do against the podman it reaches, one action a
line (+ create, ~ recreate with the reason, - remove, ! conflict), changing
nothing. Exits 0 when the node is in sync, 2 when changes are pending, 1 when
a unit is invalid or podman cannot be reached.`,
	}, nil, func(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error {
		o, err := f.options(log)
		if err != nil {
			return err
		}
		cleanup, err := f.fetchGit(ctx)
		if err != nil {
			return err
		}
		defer cleanup()
		res, err := agent.Plan(ctx, o)
		if err != nil {
			return err
		}
		for _, l := range res.Lines {
			fmt.Fprintln(env.Stdout, l)
		}
		if printProblems(env.Stderr, res.Invalid) > 0 {
			return errInvalid
		}
		if len(res.Lines) > 0 {
			return exitError{2}
		}
		return nil
	})
}

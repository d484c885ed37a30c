package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cuelet/cuelet/agent"
)

func planCommand(env *Env) *cobra.Command {
	var asJSON bool
	return agentCommand(env, &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change, changing nothing",
		Long: `Show what apply would do against the podman it reaches, one action a
line (+ create, ~ recreate, start or update with the reason, - remove,
! conflict), changing nothing. Under each ~ line, one indented line per
field says what changes, old → new, as kubectl diff and terraform plan
show it. With --json, the same as an object on stdout: "actions" (action,
object, name, unit, reasons, and changes with field, old and new) and
"problems" (as validate --json gives them). Exits 0 when the node is in
sync, 2 when changes are pending, 1 when a unit is invalid or podman
cannot be reached.`,
	}, func(fs *pflag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the plan and the problems as JSON on stdout")
	}, func(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error {
		o, cleanup, err := f.oneShotOptions(ctx, log)
		defer cleanup()
		if err != nil {
			return err
		}
		res, err := agent.Plan(ctx, o)
		if err != nil {
			return err
		}
		invalid := len(res.Invalid) > 0
		if asJSON {
			if err := printPlanJSON(env.Stdout, res); err != nil {
				return err
			}
		} else {
			printPlan(env.Stdout, res)
			invalid = printProblems(env.Stderr, res.Invalid) > 0
		}
		if invalid {
			return errInvalid
		}
		if len(res.Actions) > 0 {
			return exitError{2}
		}
		return nil
	})
}

// printPlan writes one action a line and, under each, the fields it
// changes, old → new.
func printPlan(w io.Writer, res *agent.PlanResult) {
	for _, a := range res.Actions {
		fmt.Fprintln(w, a.Line)
		for _, c := range a.Changes {
			fmt.Fprintf(w, "    %s\n", c)
		}
	}
}

func printPlanJSON(w io.Writer, res *agent.PlanResult) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

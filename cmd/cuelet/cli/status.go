package cli

import (
	"context"
	"flag"
	"time"

	"github.com/cuelet/cuelet/agent"
)

func statusCommand() *Command {
	return &Command{
		Name: "status",
		Args: "[NAME...]",
		Short: `Show the running agent's pods, services and units, from its local API
socket <run-dir>/cuelet.sock. Exits 1 when no agent answers.`,
		Setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			// Every agent flag is accepted, so that one set of flags
			// serves every command (SPEC §7); only --run-dir is used.
			var (
				f      AgentFlags
				o      statusOptions
				asJSON bool
			)
			f.Register(fs, env)
			fs.StringVar(&o.Output, "o", "", "output format: wide, json or yaml")
			fs.BoolVar(&o.Watch, "watch", false, "print again whenever the status changes")
			fs.BoolVar(&asJSON, "json", false, "the same as -o json")
			return func(ctx context.Context, args []string) error {
				if asJSON {
					o.Output = outputJSON
				}
				if err := checkOutput(o.Output); err != nil {
					return err
				}
				o.Names = args
				fetch := func(ctx context.Context) (*agent.Report, error) { return agent.FetchStatus(ctx, f.RunDir) }
				t := time.NewTicker(time.Second)
				defer t.Stop()
				return showStatus(ctx, env.Stdout, o, fetch, time.Now, t.C)
			}
		},
	}
}

package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/agent"
)

func statusCommand(env *Env) *cobra.Command {
	// Every agent flag is accepted, so that one set of flags serves every
	// command (SPEC §7); only --run-dir is used.
	var (
		f      AgentFlags
		o      statusOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status [NAME...]",
		Short: "Show the running agent's pods, services and units",
		Long: `Show the running agent's pods, services and units, from its local API
socket <run-dir>/cuelet.sock, as kubectl get shows pods and services: READY
counts the ready containers, STATUS is podman's state of the pod or why it
is held (CrashLoopBackOff), AGE is kubectl's. ENDPOINTS are the ready
endpoints of every port. NAMEs keep what they name: a replica, the
replicas of a pod, a service, or a unit with all it defines.

Exits 1 when no agent answers, or when a NAME names nothing.`,
		Example: `  cuelet status
  cuelet status web -o wide
  cuelet status --watch
  cuelet status -o json | jq '.pods[] | select(.ready | not)'`,
		ValidArgsFunction: completeNames(&f, true, true),
		RunE: func(cmd *cobra.Command, names []string) error {
			if asJSON {
				o.Output = outputJSON
			}
			if err := checkOutput(o.Output); err != nil {
				return usageError{err}
			}
			o.Names = names
			t := time.NewTicker(time.Second)
			defer t.Stop()
			return showStatus(cmd.Context(), env.Stdout, o, statusFetcher(&f), env.now, t.C)
		},
	}
	fs := flagsOf(cmd)
	fs.StringVarP(&o.Output, "output", "o", "", "output `format`: wide, json or yaml")
	fs.BoolVarP(&o.Watch, "watch", "w", false, "after the first print, print again whenever the status changes")
	fs.BoolVar(&asJSON, "json", false, "the same as --output json")
	_ = fs.MarkHidden("json") // kept for scripts written before --output
	f.Register(fs, env)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputWide, outputJSON, outputYAML}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// statusFetcher asks the agent on the flags' run dir.
func statusFetcher(f *AgentFlags) reportSource {
	return func(ctx context.Context) (*agent.Report, error) { return agent.FetchStatus(ctx, f.RunDir) }
}

// completeNames completes the names of replicas and services (as the
// flags given so far find the agent) for the shell.
func completeNames(f *AgentFlags, pods, services bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		rep, err := agent.FetchStatus(ctx, f.RunDir)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		if pods {
			for _, p := range rep.Pods {
				names = append(names, p.Replica)
			}
		}
		if services {
			for _, s := range rep.Services {
				names = append(names, s.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

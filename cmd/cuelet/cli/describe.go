package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

func describeCommand(env *Env) *cobra.Command {
	var f AgentFlags
	cmd := &cobra.Command{
		Use:   "describe [pod|service] NAME...",
		Short: "Show a replica or a service in detail, with its recent events",
		Long: `Show replicas and services in detail, as kubectl describe does, from the
running agent's local API socket <run-dir>/cuelet.sock: for a replica its
state and why it is held (CrashLoopBackOff, next restart), each container's
state, readiness and readiness probe, the service ports it is an endpoint
of, its pod's rollout, and the agent's recent actions and problems about
it; for a service its portal and each port's endpoints, and its events.

A NAME is a replica, every replica of a pod, or a service; "pod NAME" or
"service NAME" looks for that kind only. Exits 1 when a NAME names nothing.`,
		Example: `  cuelet describe web-1
  cuelet describe service web`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeNames(&f, true, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			rep, err := statusFetcher(&f)(ctx)
			if err != nil {
				return err
			}
			targets, missing := describeTargets(rep, args)
			now := env.now()
			printDescribe(env.Stdout, rep, targets, now, now.Location())
			if len(missing) > 0 {
				return notFound(missing)
			}
			return nil
		},
	}
	f.Register(flagsOf(cmd), env)
	return cmd
}

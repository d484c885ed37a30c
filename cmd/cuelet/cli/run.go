package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/agent"
)

func runCommand(env *Env) *cobra.Command {
	return agentCommand(env, &cobra.Command{
		Use:   "run",
		Short: "Run the agent: reconcile continuously and serve the service portals",
		Long: `Run the agent until SIGTERM: watch the manifest directory and podman's
events, reconcile, and serve the service portals. SIGHUP re-reads
everything at once. Pods keep running when the agent stops; the portals of
the userspace proxy stop with it, those of --proxy-mode nftables keep
serving.`,
	}, nil, func(ctx context.Context, f *AgentFlags, env *Env, log zerolog.Logger) error {
		o, err := f.runOptions(log)
		if err != nil {
			return err
		}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		o.Reload = hup
		if o.Git, err = f.Git.agentConfig(f.StateDir); err != nil {
			return err
		}
		o.Version = versionString()
		return agent.Run(ctx, o)
	})
}

package cli

import (
	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile/podman"
)

func logsCommand(env *Env) *cobra.Command {
	var (
		f AgentFlags
		o podman.LogOptions
	)
	cmd := &cobra.Command{
		Use:   "logs REPLICA [CONTAINER]",
		Short: "Print the logs of a container of a replica",
		Long: `Print what a container of a managed replica wrote, from podman (the
--podman-url), as podman logs and kubectl logs do: its stdout on stdout,
its stderr on stderr. Without CONTAINER, the first container of the
replica's spec, named on stderr when the replica has others.`,
		Example: `  cuelet logs web-1
  cuelet logs web-1 sidecar --follow --tail 20`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, typed string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeNames(&f, true, false)(cmd, args, typed)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			container := ""
			if len(args) > 1 {
				container = args[1]
			}
			labels, err := f.labels()
			if err != nil {
				return err
			}
			return showLogs(cmd.Context(), podman.New(f.PodmanURL), labels[manifests.HostnameLabel], args[0], container, o, env.Stdout, env.Stderr)
		},
	}
	fs := flagsOf(cmd)
	fs.BoolVarP(&o.Follow, "follow", "f", false, "go on printing what the container writes, until interrupted")
	fs.IntVar(&o.Tail, "tail", -1, "print the last `lines` only (-1: all)")
	fs.BoolVarP(&o.Timestamps, "timestamps", "t", false, "lead each line with its time")
	f.Register(fs, env)
	return cmd
}

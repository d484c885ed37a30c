package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/kube"
)

func exportCommand() *Command {
	return &Command{
		Name: "export",
		Args: "[PATH...]",
		Short: `Print Kubernetes YAML for the units (default: the manifest directory):
a Deployment per pod (a StatefulSet when it has persistent volumes), a
ConfigMap per files volume, a Service per service (and an EndpointSlice for
fixed endpoints), separated by "---". What Kubernetes cannot express is a
comment above its object. Invalid input: the problems validate prints, on
stderr, nothing on stdout, exit 1.`,
		Setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var (
				dir   string
				rules NodeRules
			)
			registerManifests(fs, &dir)
			rules.Register(fs)
			return func(ctx context.Context, paths []string) error {
				if len(paths) == 0 {
					paths = []string{dir}
				}
				units, err := manifests.Load(ctx, paths, rules.Options())
				if err != nil {
					return err
				}
				invalid := false
				for _, u := range units {
					for _, p := range u.Problems {
						fmt.Fprintln(env.Stderr, p)
						invalid = true
					}
				}
				if invalid {
					return errInvalid
				}
				if err := kube.Export(env.Stdout, units); err != nil {
					return fmt.Errorf("write: %w", err)
				}
				return nil
			}
		},
	}
}

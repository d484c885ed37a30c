package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/kube"
)

func exportCommand(env *Env) *cobra.Command {
	var (
		dir   string
		rules NodeRules
		git   GitFlags
	)
	cmd := &cobra.Command{
		Use:   "export [PATH...]",
		Short: "Print the units as Kubernetes YAML",
		Long: `Print Kubernetes YAML for the units (default: the manifest directory):
a Deployment per pod (a StatefulSet when it has persistent volumes), a
ConfigMap per files volume, a Service per service (and an EndpointSlice for
fixed endpoints), separated by "---". What Kubernetes cannot express is a
comment above its object. Invalid input: the problems validate prints, on
stderr, nothing on stdout, exit 1. With --node-name or --node-labels only
the pods whose nodeSelector matches that node are exported (services all
are), so that CI can see what each node would run; without them, every
pod, its nodeSelector carried over. With --git-url, the units of that
repository's --git-ref (a one-shot shallow fetch), as validate reads them.`,
		RunE: func(cmd *cobra.Command, paths []string) error {
			defer collectLessOften()()
			l, err := loadUnits(cmd.Context(), &rules, &git, dir, paths)
			if err != nil {
				return err
			}
			for _, p := range l.problems {
				fmt.Fprintln(env.Stderr, p)
			}
			if len(l.problems) > 0 {
				return errInvalid
			}
			units := l.units
			if rules.nodeGiven() {
				units = forNode(units, l.opts.NodeLabels)
			}
			if err := kube.Export(env.Stdout, units); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			return nil
		},
	}
	fs := flagsOf(cmd)
	registerManifests(fs, &dir)
	git.Register(fs)
	rules.Register(fs)
	return cmd
}

// forNode keeps, of valid units, the pods that target a node with these
// labels, and every service: services exist on every node (SPEC §11).
func forNode(units []*manifests.Unit, labels map[string]string) []*manifests.Unit {
	out := make([]*manifests.Unit, len(units))
	for i, u := range units {
		c := u.Clone()
		c.Pods = nil
		for _, p := range u.Pods {
			if manifests.TargetsNode(p.NodeSelector, labels) {
				c.Pods = append(c.Pods, p)
			}
		}
		out[i] = c
	}
	return out
}

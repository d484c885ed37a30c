package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/manifests/kube"
)

func importCommand(env *Env) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "import [FILE...]",
		Short: "Turn Kubernetes YAML into CUE units",
		Long: `Turn Kubernetes YAML (Pod, Deployment, StatefulSet, Service, EndpointSlice,
ConfigMap, PersistentVolumeClaim; what podman kube generate writes) into CUE
units; "-" or no FILE reads stdin. Prints the units on stdout, each with its
own package clause, or with -o (--output) writes one file per unit into a folder.
Whatever cuelet does not model is left out and listed on stderr as
FILE:LINE: PATH: not supported.`,
		RunE: func(_ *cobra.Command, files []string) error {
			if len(files) == 0 {
				files = []string{"-"}
			}
			var inputs []kube.Input
			for _, f := range files {
				in, err := readInput(env, f)
				if err != nil {
					return err
				}
				inputs = append(inputs, in)
			}
			res, err := kube.Import(inputs)
			var syntax *kube.SyntaxError
			if errors.As(err, &syntax) {
				fmt.Fprintln(env.Stderr, syntax)
				return errInvalid
			}
			if err != nil {
				return err
			}
			for _, u := range res.Unsupported {
				fmt.Fprintln(env.Stderr, u)
			}
			return writeUnits(env, out, res.Units)
		},
	}
	flagsOf(cmd).StringVarP(&out, "output", "o", "", "write one `folder`/PACKAGE.cue per unit instead of printing")
	return cmd
}

func readInput(env *Env, name string) (kube.Input, error) {
	if name == "-" {
		if env.Stdin == nil {
			return kube.Input{Name: "<stdin>"}, nil
		}
		b, err := io.ReadAll(env.Stdin)
		if err != nil {
			return kube.Input{}, fmt.Errorf("read stdin: %w", err)
		}
		return kube.Input{Name: "<stdin>", Data: b}, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return kube.Input{}, err
	}
	return kube.Input{Name: name, Data: b}, nil
}

func writeUnits(env *Env, dir string, units []kube.ImportedUnit) error {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for i, u := range units {
		b, err := u.CUE()
		if err != nil {
			return err
		}
		if dir == "" {
			if i > 0 {
				fmt.Fprintln(env.Stdout)
			}
			if _, err := env.Stdout.Write(b); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			continue
		}
		if err := renameio.WriteFile(filepath.Join(dir, u.Package+".cue"), b, 0o644); err != nil {
			return fmt.Errorf("write unit: %w", err)
		}
	}
	return nil
}

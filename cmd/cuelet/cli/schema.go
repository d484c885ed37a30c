package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/schema"
)

func schemaCommand(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the built-in CUE schema",
		Long:  "Print the built-in CUE schema, to vendor for editors and cue vet.",
		Example: `  cuelet schema > cuelet.cue
  cue export mine.cue | cue vet -c -d '#Manifest' cuelet.cue json: -`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{errors.New("takes no arguments")}
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			_, err := env.Stdout.Write(schema.Source)
			return err
		},
	}
}

package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/cuelet/cuelet/schema"
)

func schemaCommand() *Command {
	return &Command{
		Name: "schema",
		Short: `Print the built-in CUE schema, to vendor for editors and cue vet:
  cuelet schema > cuelet.cue
  cue export mine.cue | cue vet -c -d '#Manifest' cuelet.cue json: -`,
		Setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			return func(_ context.Context, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("takes no arguments")
				}
				_, err := env.Stdout.Write(schema.Source)
				return err
			}
		},
	}
}

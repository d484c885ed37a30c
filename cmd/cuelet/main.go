// Command cuelet is a node agent that keeps one podman host's pods and
// services equal to a directory of CUE manifests. See README.md.
package main

import (
	"os"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
)

func main() { os.Exit(cli.Main()) }

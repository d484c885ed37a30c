package cli_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
)

// TestMain lets the scripts run "cuelet": testscript runs this test binary
// as the command, which calls the same Main as the real one.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cuelet": func() { os.Exit(cli.Main()) },
	})
}

// The scripts are testdata/script/*.txtar. $EXAMPLES is the repository's
// examples folder and $SCHEMA the schema file, for comparisons; $GOVERSION
// and $OSARCH are the Go version and platform, for cmpenv.
func TestScripts_run_the_commands_and_match_their_golden_output(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		// CUELET_UPDATE_GOLDEN=1 rewrites the cmp files of the scripts
		// from what the commands print, for a change of output on purpose.
		UpdateScripts: os.Getenv("CUELET_UPDATE_GOLDEN") != "",
		Setup: func(env *testscript.Env) error {
			env.Setenv("EXAMPLES", filepath.Join(root, "manifests", "examples"))
			env.Setenv("SCHEMA", filepath.Join(root, "schema", "cuelet.cue"))
			// What `cuelet version` says of the toolchain and platform.
			env.Setenv("GOVERSION", runtime.Version())
			env.Setenv("OSARCH", runtime.GOOS+"/"+runtime.GOARCH)
			return nil
		},
	})
}

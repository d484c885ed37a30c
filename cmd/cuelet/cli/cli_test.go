package cli_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

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
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"serve-status": serveStatus,
			"cuelet-at":    cueletAt,
		},
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

// serveStatus answers as an agent's status socket would, with a recorded
// report, until the script ends: serve-status RUNDIR REPORT.json. The
// file is read on every request.
func serveStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: serve-status RUNDIR REPORT.json")
	}
	dir, report := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(dir, 0o755))
	ln, err := net.Listen("unix", filepath.Join(dir, "cuelet.sock"))
	ts.Check(err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(report)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(ln) }()
	ts.Defer(func() { _ = srv.Close() })
}

// cueletAt runs cuelet in-process with its clock at a fixed time, so that
// ages in the golden output do not move: cuelet-at RFC3339-TIME ARGS....
// It runs in the test's process: paths must be absolute ($WORK/...).
func cueletAt(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: cuelet-at TIME [ARGS...]")
	}
	at, err := time.Parse(time.RFC3339, args[0])
	ts.Check(err)
	env := &cli.Env{Stdout: ts.Stdout(), Stderr: ts.Stderr(), Getenv: ts.Getenv, Now: func() time.Time { return at }}
	code := cli.Run(context.Background(), env, args[1:])
	switch {
	case neg && code == 0:
		ts.Fatalf("cuelet succeeded unexpectedly")
	case !neg && code != 0:
		ts.Fatalf("cuelet exited %d", code)
	}
}

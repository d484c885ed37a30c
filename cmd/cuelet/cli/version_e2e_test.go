package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// `cuelet version` against a real podman service (podmantest) prints that
// service's version as the Server part, as `podman version` does, in text
// and in JSON. It needs root and podman; without them it skips, unless CI
// is set. The Client part and an unreachable podman are in the scripts
// (testdata/script/schema_version_usage.txtar).
func TestVersion_prints_the_podman_it_reaches_as_the_Server_part(t *testing.T) {
	p := podmantest.New(t)
	// The service runs the podman binary on PATH: its own version is the
	// one the server part must show.
	want, err := exec.Command("podman", "version", "--format", "{{.Client.Version}}").Output()
	if err != nil {
		t.Fatalf("podman version: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		env := &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		if code := cli.Run(ctx, env, append([]string{"version", "--podman-url", p.URL}, args...)); code != 0 || errb.Len() > 0 {
			t.Fatalf("cuelet version %q: exit %d, stderr %q", args, code, errb.String())
		}
		return out.String()
	}

	text := run()
	t.Logf("cuelet version:\n%s", text)
	server := regexp.QuoteMeta(strings.TrimSpace(string(want)))
	for _, line := range []string{
		`(?m)^Client: +cuelet$`,
		`(?m)^Server: +Podman Engine\nVersion: +` + server + `\nAPI Version: +\S+\nGo Version: +go\S+\n(Git Commit: +\S+\n)?(Built: +.+\n)?OS/Arch: +linux/\S+$`,
	} {
		if !regexp.MustCompile(line).MatchString(text) {
			t.Errorf("cuelet version printed\n%s\nwithout a match for %s", text, line)
		}
	}

	var rep struct {
		Client struct{ Version string }
		Server *struct{ Version, APIVersion, OSArch string }
	}
	if err := json.Unmarshal([]byte(run("--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Client.Version == "" || rep.Server == nil || rep.Server.Version != strings.TrimSpace(string(want)) || rep.Server.APIVersion == "" || !strings.HasPrefix(rep.Server.OSArch, "linux/") {
		t.Errorf("cuelet version --json: %+v, server %+v; want podman %s", rep, rep.Server, want)
	}
}

package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// directives parses a unit file into section.key -> values.
func directives(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a directive: %q", path, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func TestUnit_says_what_SPEC_5_promises(t *testing.T) {
	d := directives(t, "cuelet.service")
	want := map[string]string{
		"Service.Type":       "notify",
		"Service.Restart":    "on-failure",
		"Service.KillMode":   "mixed",
		"Service.ExecReload": "/bin/kill -HUP $MAINPID",
		"Service.ExecStart":  "@BINDIR@/cuelet run --manifests /etc/cuelet/manifests",
		// Pods bind-mount folders of the run dir; it must outlive the agent.
		"Service.RuntimeDirectoryPreserve": "yes",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(d["Service.WatchdogSec"]) != 1 {
		t.Errorf("WatchdogSec missing")
	}
	for _, k := range []string{"Unit.After", "Unit.Wants"} {
		if !strings.Contains(strings.Join(d[k], " "), "podman.socket") {
			t.Errorf("%s lacks podman.socket: %q", k, d[k])
		}
	}
}

// TestUnit_passes_systemd_analyze_verify checks the unit the way `make
// install` writes it. systemd need not be PID 1 for this.
func TestUnit_passes_systemd_analyze_verify(t *testing.T) {
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	b, err := os.ReadFile("cuelet.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists; any executable stands
	// in for the real one.
	bindir := t.TempDir()
	if err := os.Symlink("/bin/true", filepath.Join(bindir, "cuelet")); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "cuelet.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("@BINDIR@"), []byte(bindir)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	// verify also complains about unrelated units of the machine it runs
	// on; only lines about ours count.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "cuelet") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestTmpfiles_entries_are_well_formed(t *testing.T) {
	b, err := os.ReadFile("cuelet.tmpfiles")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 6 || f[0] != "d" {
			t.Fatalf("entry %q: want 6 fields of type d", l)
		}
		dirs = append(dirs, f[1])
	}
	want := []string{"/etc/cuelet/manifests", "/var/lib/cuelet", "/run/cuelet"}
	if strings.Join(dirs, " ") != strings.Join(want, " ") {
		t.Fatalf("folders %q, want %q", dirs, want)
	}
}

// TestMakeInstall_puts_everything_in_place runs `make install` into a
// DESTDIR and verifies the installed unit against the installed binary.
func TestMakeInstall_puts_everything_in_place(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testenv.RequireCommand(t, "make")
	dest := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/cuelet").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, p := range []string{
		"opt/cuelet/bin/cuelet",
		"etc/systemd/system/cuelet.service",
		"etc/tmpfiles.d/cuelet.conf",
		"etc/cuelet/manifests",
		"var/lib/cuelet",
		"opt/cuelet/share/doc/cuelet/examples/web.cue",
		"opt/cuelet/share/doc/cuelet/examples/redis/pod.cue",
	} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not installed: %s", p)
		}
	}
	d := directives(t, filepath.Join(dest, "etc/systemd/system/cuelet.service"))
	if got := d["Service.ExecStart"]; len(got) != 1 || got[0] != "/opt/cuelet/bin/cuelet run --manifests /etc/cuelet/manifests" {
		t.Fatalf("installed ExecStart = %q", got)
	}
	// The binary runs.
	if out, err := exec.Command(filepath.Join(dest, "opt/cuelet/bin/cuelet"), "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "cuelet ") {
		t.Fatalf("installed cuelet version: %v %s", err, out)
	}
}

func TestGitDropIn_passes_systemd_analyze_verify_with_the_unit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing; CI must install systemd")
		}
		t.Skip("systemd-analyze not installed")
	}
	bindir := t.TempDir()
	if err := os.Symlink("/bin/true", filepath.Join(bindir, "cuelet")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"cuelet.service":                    "cuelet.service",
		"cuelet.service.d-git.conf.example": "cuelet.service.d/git.conf",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("@BINDIR@"), []byte(bindir))
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin"), []byte(bindir))
		p := filepath.Join(dir, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := directives(t, filepath.Join(dir, "cuelet.service.d", "git.conf"))
	if exec := d["Service.ExecStart"]; len(exec) != 2 || exec[0] != "" || !strings.Contains(exec[1], " run --git-url ") || strings.Contains(exec[1], "--manifests") {
		t.Fatalf("the drop-in's ExecStart= lines %q: want the unit's cleared, then run --git-url without --manifests", exec)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "cuelet.service")).CombinedOutput()
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "cuelet") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

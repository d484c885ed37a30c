package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/netproxy/testenv"
)

// substitute does what `make install` does to the unit, with bindir as
// the binary's folder.
func substitute(unit []byte, bindir string) []byte {
	unit = bytes.ReplaceAll(unit, []byte("@BINDIR@"), []byte(bindir))
	return bytes.ReplaceAll(unit, []byte("@DOCDIR@"), []byte("/usr/local/share/doc/cuelet"))
}

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
		"Service.ExecStart":  "@BINDIR@/cuelet run --manifests ${CUELET_MANIFESTS} $CUELET_OPTS",
		// The flags are variables; the administrator's file overrides them.
		"Service.EnvironmentFile": "-/etc/cuelet/cuelet.env",
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
	if doc := strings.Join(d["Unit.Documentation"], " "); !strings.Contains(doc, "man:cuelet(1)") || !strings.Contains(doc, "operations.md") || strings.Contains(doc, "podman") {
		t.Errorf("Documentation=%q: want cuelet's man page and docs", doc)
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
	if err := os.WriteFile(unit, substitute(b, bindir), 0o644); err != nil {
		t.Fatal(err)
	}
	// --man=no: the man page is installed with the binary, not here.
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
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
	if got := d["Service.ExecStart"]; len(got) != 1 || got[0] != "/opt/cuelet/bin/cuelet run --manifests ${CUELET_MANIFESTS} $CUELET_OPTS" {
		t.Fatalf("installed ExecStart = %q", got)
	}
	if doc := strings.Join(d["Unit.Documentation"], " "); !strings.Contains(doc, "file:/opt/cuelet/share/doc/cuelet/operations.md") {
		t.Errorf("installed Documentation=%q lacks the installed docs", doc)
	}
	if _, err := os.Stat(filepath.Join(dest, "opt/cuelet/share/doc/cuelet/operations.md")); err != nil {
		t.Errorf("docs not installed: %v", err)
	}
	// The settings file is installed once; a reinstall keeps the
	// administrator's.
	env := filepath.Join(dest, "etc/cuelet/cuelet.env")
	if b, err := os.ReadFile(env); err != nil || !strings.Contains(string(b), "CUELET_OPTS") {
		t.Fatalf("cuelet.env not installed: %v", err)
	}
	mine := []byte("CUELET_OPTS=--log-level debug\n")
	if err := os.WriteFile(env, mine, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/cuelet").CombinedOutput(); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(env); !bytes.Equal(b, mine) {
		t.Errorf("a reinstall replaced the administrator's cuelet.env with %q", b)
	}
	// The example settings name real flags of cuelet run.
	help, _ := exec.Command(filepath.Join(dest, "opt/cuelet/bin/cuelet"), "run", "-h").CombinedOutput()
	for _, f := range exampleFlags(t) {
		if !strings.Contains(string(help), "-"+f) {
			t.Errorf("cuelet.env's example flag --%s is not in cuelet run -h:\n%s", f, help)
		}
	}
	// The binary runs (--version: `cuelet version` asks podman too).
	if out, err := exec.Command(filepath.Join(dest, "opt/cuelet/bin/cuelet"), "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "cuelet ") {
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
		b = substitute(b, bindir)
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
	if exec := d["Service.ExecStart"]; len(exec) != 2 || exec[0] != "" || !strings.Contains(exec[1], " run --git-url ") || strings.Contains(exec[1], "--manifests") || !strings.HasSuffix(exec[1], " $CUELET_OPTS") {
		t.Fatalf("the drop-in's ExecStart= lines %q: want the unit's cleared, then run --git-url without --manifests, with $CUELET_OPTS", exec)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "cuelet.service")).CombinedOutput()
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

// exampleFlags are the flags the example settings file shows.
func exampleFlags(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("cuelet.env")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`--([a-z][a-z-]+)`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatal("cuelet.env shows no flag")
	}
	return out
}

func TestEnvFile_sets_only_the_variables_the_unit_uses(t *testing.T) {
	d := directives(t, "cuelet.service")
	exec := strings.Join(d["Service.ExecStart"], " ")
	defaults := map[string]bool{}
	for _, e := range d["Service.Environment"] {
		k, _, _ := strings.Cut(e, "=")
		defaults[k] = true
	}
	b, err := os.ReadFile("cuelet.env")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, m := range regexp.MustCompile(`(?m)^#?([A-Z_]+)=`).FindAllStringSubmatch(string(b), -1) {
		v := m[1]
		seen++
		if !defaults[v] {
			t.Errorf("cuelet.env sets %s, which the unit has no default for", v)
		}
		if !strings.Contains(exec, "$"+v) && !strings.Contains(exec, "${"+v+"}") {
			t.Errorf("cuelet.env sets %s, which ExecStart= does not use", v)
		}
	}
	if seen != len(defaults) {
		t.Errorf("cuelet.env shows %d variables, the unit has %d defaults", seen, len(defaults))
	}
}

// The hardening of the unit, and the exposure score systemd gives it
// (docs/operations.md states it: 4.8 before this hardening).
func TestUnit_is_hardened_where_cuelet_still_works(t *testing.T) {
	d := directives(t, "cuelet.service")
	for k, v := range map[string]string{
		"Service.ProtectSystem":         "strict",
		"Service.ProtectKernelTunables": "yes",
		// nftables mode writes route_localnet.
		"Service.ReadWritePaths":   "/proc/sys/net/ipv4/conf",
		"Service.StateDirectory":   "cuelet",
		"Service.RuntimeDirectory": "cuelet",
	} {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if f := d["Service.SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q, want @system-service first", f)
	}
	if o := d["Service.OOMScoreAdjust"]; len(o) != 1 {
		t.Errorf("OOMScoreAdjust = %q, want one", o)
	} else if n, err := strconv.Atoi(o[0]); err != nil || n >= 0 || n <= -1000 {
		t.Errorf("OOMScoreAdjust = %s, want negative (the data path) but killable (not -1000)", o[0])
	}

	analyze := testenv.RequireCommand(t, "systemd-analyze")
	b, err := os.ReadFile("cuelet.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "cuelet.service")
	if err := os.WriteFile(unit, substitute(b, "/usr/local/bin"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(analyze, "security", "--offline=yes", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for cuelet.service: (\d+\.\d)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security gave no score:\n%s", out)
	}
	t.Logf("exposure %s", m[1])
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.2 {
		t.Errorf("exposure level %s, more than the 2.2 docs/operations.md states:\n%s", m[1], out)
	}
}

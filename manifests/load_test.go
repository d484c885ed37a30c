package manifests_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/manifests"
)

// write creates files under dir; a value starting with "-> " makes a
// symbolic link to the rest.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func podFile(name string) string {
	return "pods: \"" + name + "\": containers: app: image: \"busybox\"\n"
}

var defaultOpts = manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/16")}

// loadDir loads dir with LoadDir and returns the units' IDs and every
// problem as a line.
func loadDir(t *testing.T, dir string, opts manifests.Options) (ids, problems []string) {
	t.Helper()
	units, err := manifests.LoadDir(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		ids = append(ids, u.ID)
		for _, p := range u.Problems {
			problems = append(problems, p.String())
		}
	}
	return ids, problems
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadDirSkipsHiddenNamesEditorLeftoversAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"a.cue":                podFile("a"),
		".hidden.cue":          podFile("hidden"),
		".git/objects/x.cue":   podFile("git"),
		"sub/.worktrees/y.cue": podFile("worktree"),
		"a.cue~":               podFile("tilde"),
		"a.cue.swp":            podFile("swp"),
		"a.cue.tmp":            podFile("tmp"),
		"#a.cue#":              podFile("emacs"),
		"backup~/b.cue":        podFile("backup"),
		"scratch.tmp/c.cue":    podFile("scratch"),
		"notes.txt":            "not cue",
		"sub/deeper/d.cue":     podFile("d"),
	})
	ids, problems := loadDir(t, dir, defaultOpts)
	equal(t, "units", ids, []string{"a.cue", "sub/deeper/d.cue"})
	equal(t, "problems", problems, nil)
}

func TestLoadDirFollowsSymlinksToFilesAndFolders(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"outside/real.cue":          podFile("linked-file"),
		"m/.worktrees/rev1/web.cue": podFile("web"),
		"m/current":                 "-> .worktrees/rev1",
		"m/file.cue":                "-> ../outside/real.cue",
		"m/gone.cue":                "-> nowhere.cue",
	})
	ids, problems := loadDir(t, filepath.Join(dir, "m"), defaultOpts)
	equal(t, "units", ids, []string{"current/web.cue", "file.cue"})
	equal(t, "problems", problems, nil)
}

func TestLoadDirReportsASymlinkLoopOnceAndStops(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"a.cue":      podFile("a"),
		"sub/b.cue":  podFile("b"),
		"sub/loop":   "-> ..",
		"sub/itself": "-> .",
	})
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, problems := loadDir(t, dir, defaultOpts)
	equal(t, "units", ids, []string{"a.cue", "sub/b.cue", "sub/itself", "sub/loop"})
	equal(t, "problems", problems, []string{
		"sub/itself:1:1: symbolic link loop: sub/itself leads back to " + filepath.Join(real, "sub") + "; not followed",
		"sub/loop:1:1: symbolic link loop: sub/loop leads back to " + real + "; not followed",
	})
}

func TestFilesOfOneFolderWithOnePackageAreOneUnit(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"web/pod.cue":     "package web\n\n_image: \"busybox\"\n" + "pods: web: containers: app: image: _image\n",
		"web/service.cue": "package web\n\nservices: web: {selector: app: \"web\", ports: [{port: 80}]}\n",
		"web/other.cue":   "package other\n\n" + podFile("other"),
		"web/loose.cue":   podFile("loose"),
		"web/loose2.cue":  podFile("loose2"),
		"api/pod.cue":     "package web\n\n" + podFile("api"),
	})
	units, err := manifests.LoadDir(context.Background(), dir, defaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range units {
		got = append(got, u.ID+" "+strings.Join(u.Files, ","))
		if !u.Valid() {
			t.Errorf("unit %s: %v", u.ID, u.Problems)
		}
	}
	equal(t, "units", got, []string{
		"api:web api/pod.cue",
		"web/loose.cue web/loose.cue",
		"web/loose2.cue web/loose2.cue",
		"web:other web/other.cue",
		"web:web web/pod.cue,web/service.cue",
	})
}

func TestProblemsOfAPackageUnitPointIntoTheFileThatHasThem(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"web/pod.cue":     "package web\n\npods: web: containers: app: image: \"busybox\"\n",
		"web/service.cue": "package web\n\nservices: web: {\n\tselector: app: \"web\"\n\tports: [{port: 0}]\n}\n",
	})
	_, problems := loadDir(t, dir, defaultOpts)
	equal(t, "problems", problems, []string{"web/service.cue:5:17: services.web.ports.0.port: 0 is below the minimum 1"})
}

func TestLoadNamesFilesAsTheRootWasGiven(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"sub/bad.cue": "pods: web: {\n\treplicas: 200\n\tcontainers: app: image: \"x\"\n}\n"})
	t.Chdir(dir)
	for root, file := range map[string]string{
		".":             "sub/bad.cue",
		"sub":           "sub/bad.cue",
		"./sub/":        "sub/bad.cue",
		"./sub/bad.cue": "./sub/bad.cue",
		dir:             filepath.Join(dir, "sub/bad.cue"),
	} {
		units, err := manifests.Load(context.Background(), []string{root}, defaultOpts)
		if err != nil {
			t.Fatal(err)
		}
		if len(units) != 1 || len(units[0].Problems) != 1 {
			t.Fatalf("root %q: units %+v", root, units)
		}
		want := file + ":2:12: pods.web.replicas: 200 is above the maximum 100"
		if got := units[0].Problems[0].String(); got != want {
			t.Errorf("root %q: got %q, want %q", root, got, want)
		}
	}
}

func TestLoadFailsOnlyWhenARootCannotBeRead(t *testing.T) {
	_, err := manifests.Load(context.Background(), []string{filepath.Join(t.TempDir(), "missing")}, defaultOpts)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("err = %v, want no such file or directory", err)
	}
}

func TestAnInvalidUnitHasNoPodsOrServices(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.cue": podFile("a") + "services: a: {selector: app: \"a\", ports: []}\n"})
	units, err := manifests.LoadDir(context.Background(), dir, defaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	if u := units[0]; u.Valid() || u.Pods != nil || u.Services != nil {
		t.Fatalf("unit = %+v, want invalid and empty", u)
	}
}

func TestDecodingFillsInEveryDefault(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"web.cue": `
pods: web: {
	labels: app: "web"
	containers: {
		b: {image: "busybox", resources: memory: "256Mi", ports: [{name: "http", containerPort: 80}]}
		a: {image: "busybox", readinessProbe: httpGet: port: "http", resources: {memory: "1G", cpus: 2}}
	}
	volumes: {
		z: emptyDir: {}
		y: files: "a.conf": "x"
	}
}
services: web: {selector: app: "web", ports: [{port: 80}]}
`})
	units, err := manifests.LoadDir(context.Background(), dir, defaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	u := units[0]
	if !u.Valid() {
		t.Fatal(u.Problems)
	}
	wantPod := manifests.Pod{
		Name: "web", Replicas: 1, Labels: map[string]string{"app": "web"}, RestartPolicy: "Always",
		TerminationGracePeriodSeconds: 10, ProgressDeadlineSeconds: 600,
		Containers: []manifests.Container{
			{Name: "a", Image: "busybox", ImagePullPolicy: "IfNotPresent",
				Resources: manifests.Resources{Memory: "1G", MemoryBytes: 1e9, CPUs: 2},
				ReadinessProbe: &manifests.Probe{
					HTTPGet:       &manifests.HTTPGetAction{Path: "/", Port: manifests.PortRef{Name: "http"}},
					PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
				}},
			{Name: "b", Image: "busybox", ImagePullPolicy: "IfNotPresent",
				Ports:     []manifests.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: "TCP"}},
				Resources: manifests.Resources{Memory: "256Mi", MemoryBytes: 256 << 20}},
		},
		Volumes: []manifests.Volume{
			{Name: "y", Files: map[string]string{"a.conf": "x"}},
			{Name: "z", EmptyDir: &manifests.EmptyDirSource{}},
		},
	}
	if !reflect.DeepEqual(u.Pods, []manifests.Pod{wantPod}) {
		t.Errorf("pods:\ngot  %+v\nwant %+v", u.Pods, []manifests.Pod{wantPod})
	}
	wantService := manifests.Service{
		Name: "web", Selector: map[string]string{"app": "web"}, SessionAffinity: "None", SessionAffinityTimeoutSeconds: 10800,
		Ports: []manifests.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: manifests.PortRef{Number: 80}}},
	}
	if !reflect.DeepEqual(u.Services, []manifests.Service{wantService}) {
		t.Errorf("services:\ngot  %+v\nwant %+v", u.Services, []manifests.Service{wantService})
	}
	if string(u.Source["web.cue"]) == "" || !reflect.DeepEqual(u.Files, []string{"web.cue"}) {
		t.Errorf("files %v, source %q", u.Files, u.Source)
	}
}

func TestParseMemory_reads_decimal_and_binary_suffixes_and_rejects_the_rest(t *testing.T) {
	for q, want := range map[string]int64{"0": 0, "512": 512, "1k": 1000, "2Ki": 2048, "3M": 3e6, "256Mi": 256 << 20, "1Gi": 1 << 30, "1T": 1e12, "1Ti": 1 << 40} {
		if got, err := manifests.ParseMemory(q); err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", q, got, err, want)
		}
	}
	for _, q := range []string{"", "Mi", "1.5Gi", "1Q", "99999999999Ti"} {
		if _, err := manifests.ParseMemory(q); err == nil {
			t.Errorf("ParseMemory(%q) succeeded, want an error", q)
		}
	}
}

func TestLoadSource_checks_a_unit_from_memory_like_LoadDir(t *testing.T) {
	files := map[string][]byte{
		"team/a.cue": []byte("package team\npods: web: containers: app: image: \"busybox\"\n"),
		"team/b.cue": []byte("package team\nservices: web: {selector: app: \"web\", ports: [{port: 80}]}\n"),
	}
	u, err := manifests.LoadSource("team:team", files, manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	if !u.Valid() || len(u.Pods) != 1 || len(u.Services) != 1 || u.ID != "team:team" {
		t.Fatalf("unit = %+v", u)
	}
	if got := strings.Join(u.Files, ","); got != "team/a.cue,team/b.cue" {
		t.Fatalf("files = %s", got)
	}
	bad, err := manifests.LoadSource("x.cue", map[string][]byte{"x.cue": []byte("pods: web: replicas: 200\n")}, manifests.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Valid() || bad.Problems[0].File != "x.cue" {
		t.Fatalf("problems = %v", bad.Problems)
	}
}

func TestPodDNS_is_the_nodes_server_and_search_then_dnsConfig(t *testing.T) {
	src := func(dnsConfig string) map[string][]byte {
		return map[string][]byte{"a.cue": []byte("pods: web: {\n\tcontainers: app: image: \"busybox\"\n" + dnsConfig + "}\n")}
	}
	withConfig := src("\tdnsConfig: {nameservers: [\"192.0.2.53\"], searches: [\"corp.example\"], options: [{name: \"ndots\", value: \"2\"}, {name: \"edns0\"}]}\n")
	node := manifests.Options{
		PortalCIDR: netip.MustParsePrefix("10.96.0.0/16"), DNSAddress: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "example.internal",
	}
	off := manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/16")}
	tests := []struct {
		name  string
		files map[string][]byte
		opts  manifests.Options
		want  *manifests.PodDNS
	}{
		{"node_dns_alone", src(""), node, &manifests.PodDNS{
			Servers: []string{"10.96.0.10"}, Searches: []string{"svc.example.internal"}}},
		{"dns_config_comes_after_the_nodes_entries", withConfig, node, &manifests.PodDNS{
			Servers: []string{"10.96.0.10", "192.0.2.53"}, Searches: []string{"svc.example.internal", "corp.example"},
			Options: []string{"ndots:2", "edns0"}}},
		{"dns_off_leaves_podmans_defaults", src(""), off, nil},
		{"dns_off_with_dns_config_is_the_config_alone", withConfig, off, &manifests.PodDNS{
			Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"ndots:2", "edns0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := manifests.LoadSource("a.cue", tt.files, tt.opts)
			if err != nil || !u.Valid() {
				t.Fatalf("load: %v %v", err, u.Problems)
			}
			if got := u.Pods[0].DNS; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DNS = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPodDNSConfig_rejects_what_is_no_nameserver(t *testing.T) {
	u, err := manifests.LoadSource("a.cue", map[string][]byte{"a.cue": []byte(
		"pods: web: {\n\tcontainers: app: image: \"busybox\"\n\tdnsConfig: nameservers: [\"dns.example\"]\n}\n")}, manifests.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if u.Valid() || u.Problems[0].Line != 3 || !strings.Contains(u.Problems[0].Path, "dnsConfig.nameservers") {
		t.Fatalf("problems = %v, want one at a.cue:3 on dnsConfig.nameservers", u.Problems)
	}
}

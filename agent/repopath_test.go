package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile/podman"
)

func TestInRepository(t *testing.T) {
	for _, c := range []struct {
		name, gitPath, in, want string
	}{
		{"a_file_gets_the_folder_in_front", "nodes/a", "web.cue", "nodes/a/web.cue"},
		{"a_file_below_keeps_its_folders", "nodes/a", "sub/web.cue", "nodes/a/sub/web.cue"},
		{"the_package_unit_of_the_folder_itself_is_named_by_the_folder", "nodes/a", ".:node", "nodes/a:node"},
		{"a_package_unit_below_keeps_its_folder", "nodes/a", "sub:node", "nodes/a/sub:node"},
		{"the_repository_root_changes_nothing", "", ".:node", ".:node"},
		{"a_root_spelled_with_slashes_changes_nothing", "/./", "web.cue", "web.cue"},
		{"a_git_path_is_cleaned_as_the_git_source_cleans_it", "/nodes//a/", "web.cue", "nodes/a/web.cue"},
		{"no_file_stays_no_file", "nodes/a", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := InRepository(c.gitPath, c.in); got != c.want {
				t.Errorf("InRepository(%q, %q) = %q, want %q", c.gitPath, c.in, got, c.want)
			}
		})
	}
}

// With --git-url --git-path, the report that `cuelet status` shows names
// units and files by their path in the repository, as plan and validate
// do; the node keeps its own IDs, which label the pods.
func TestNode_with_a_git_path_reports_units_by_their_path_in_the_repository(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	manifestDir := filepath.Join(dir, "manifests")
	for name, content := range map[string]string{
		"web.cue":    "pods: web: containers: app: image: \"busybox\"\n",
		"bad.cue":    "pods: bad: {replicas: 200, containers: app: image: \"busybox\"}\n",
		"cache.cue":  "package node\n\npods: cache: containers: app: image: \"busybox\"\n",
		"sub/db.cue": "pods: db: containers: app: image: \"busybox\"\n",
	} {
		p := filepath.Join(manifestDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	node, err := NewNode(ctx, NodeConfig{
		ManifestDir: manifestDir,
		Options:     manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/24")},
		StateDir:    filepath.Join(dir, "state"),
		RunDir:      filepath.Join(dir, "run"),
		Podman:      podman.New("unix://" + filepath.Join(dir, "no-podman.sock")),
		GitPath:     "nodes/a",
		Log:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nodes/a/bad.cue", "nodes/a/sub/db.cue", "nodes/a/web.cue", "nodes/a:node"}
	for pass := range 2 { // the second pass must not put the folder in front twice
		rep := node.Sync(ctx)
		var ids []string
		var problems []string
		for _, u := range rep.Units {
			ids = append(ids, u.ID)
			for _, p := range u.Problems {
				problems = append(problems, p.File)
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, want) {
			t.Errorf("pass %d: units %q, want %q", pass+1, ids, want)
		}
		if !slices.Equal(problems, []string{"nodes/a/bad.cue"}) {
			t.Errorf("pass %d: problem files %q, want bad.cue's by its path in the repository", pass+1, problems)
		}
	}
	d, err := node.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var own []string
	for _, u := range d.units {
		own = append(own, u.found.ID)
	}
	slices.Sort(own)
	if w := []string{".:node", "bad.cue", "sub/db.cue", "web.cue"}; !slices.Equal(own, w) {
		t.Errorf("the node's own unit IDs became %q, want %q", own, w)
	}
}

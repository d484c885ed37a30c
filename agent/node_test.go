package agent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
)

func TestNode_Sync_with_podman_away_reports_errors_that_errors_Is_recognises(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	node, err := NewNode(ctx, NodeConfig{
		ManifestDir: t.TempDir(),
		Options:     manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/24")},
		StateDir:    filepath.Join(dir, "state"),
		RunDir:      filepath.Join(dir, "run"),
		Podman:      podman.New("unix://" + filepath.Join(dir, "no-podman.sock")),
		Log:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := node.Sync(ctx)
	if !rep.PodmanDown {
		t.Errorf("PodmanDown not set: %+v", rep)
	}
	if len(rep.Errors) == 0 {
		t.Fatal("no error reported")
	}
	for _, err := range rep.Errors {
		if !errors.Is(err, reconcile.ErrPodmanUnavailable) {
			t.Errorf("error %q is not ErrPodmanUnavailable", err)
		}
		var ue *podman.UnavailableError
		if !errors.As(err, &ue) || ue.URL == "" {
			t.Errorf("error %q does not carry the podman URL as an *UnavailableError", err)
		}
	}
}

func TestNode_load_checks_again_only_the_units_whose_files_changed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	manifestDir := filepath.Join(dir, "manifests")
	for _, d := range []string{"state", "manifests"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, image string) {
		t.Helper()
		unit := "pods: " + name + ": containers: app: image: \"" + image + "\"\n"
		if err := os.WriteFile(filepath.Join(manifestDir, name+".cue"), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "busybox")
	write("b", "busybox")
	node, err := NewNode(ctx, NodeConfig{
		ManifestDir: manifestDir,
		Options:     manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/24")},
		StateDir:    filepath.Join(dir, "state"),
		RunDir:      filepath.Join(dir, "run"),
		Podman:      podman.New("unix://" + filepath.Join(dir, "no-podman.sock")),
		Log:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := node.load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := node.units.Checked(); n != 2 {
		t.Fatalf("two passes over two unchanged units checked %d units, want 2", n)
	}
	write("b", "alpine")
	d, err := node.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := node.units.Checked(); n != 3 {
		t.Fatalf("a pass after b changed checked %d units, want 3 in all", n)
	}
	if got := d.applied[1].Pods[0].Containers[0].Image; got != "alpine" {
		t.Fatalf("b's image is %q, want the changed one", got)
	}
}

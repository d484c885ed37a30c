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

package podman_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

func TestDialUnreachablePodmanIsOneClearError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "unix://" + filepath.Join(t.TempDir(), "podman.sock")
	_, err := podman.Dial(ctx, url)
	if !errors.Is(err, reconcile.ErrPodmanUnavailable) {
		t.Fatalf("err = %v, want ErrPodmanUnavailable", err)
	}
	want := "^cannot reach podman at " + regexp.QuoteMeta(url) + ": .+; is podman.socket running\\?$"
	if !regexp.MustCompile(want).MatchString(err.Error()) {
		t.Errorf("message %q does not match %q", err, want)
	}
	if testing.Verbose() {
		t.Log(err)
	}
}

func TestDefaultURL_is_the_system_socket_unless_CONTAINER_HOST_names_another(t *testing.T) {
	t.Setenv("CONTAINER_HOST", "")
	if got := podman.DefaultURL(); got != "unix:///run/podman/podman.sock" {
		t.Errorf("without CONTAINER_HOST: %q", got)
	}
	t.Setenv("CONTAINER_HOST", "unix:///tmp/x.sock")
	if got := podman.DefaultURL(); got != "unix:///tmp/x.sock" {
		t.Errorf("with CONTAINER_HOST: %q", got)
	}
}

// The agent makes its client before podman may be there (socket
// activation, an upgrade) and must not need a new one once it is.
func TestClientMadeWhilePodmanIsDownConnectsOnceItAnswers(t *testing.T) {
	pm := podmantest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pm.StopService(); err != nil {
		t.Fatal(err)
	}
	c := podman.New(pm.URL)
	if _, err := c.ListPods(ctx); !errors.Is(err, reconcile.ErrPodmanUnavailable) {
		t.Fatalf("ListPods with podman stopped: err = %v, want ErrPodmanUnavailable", err)
	}
	if err := pm.StartService(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListPods(ctx); err != nil {
		t.Fatalf("ListPods once podman answers: %v", err)
	}
	// Connected, the client dials per request: a podman restart needs no
	// new connect either.
	if err := pm.StopService(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListPods(ctx); !errors.Is(err, reconcile.ErrPodmanUnavailable) {
		t.Fatalf("ListPods after podman stopped again: err = %v, want ErrPodmanUnavailable", err)
	}
	if err := pm.StartService(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListPods(ctx); err != nil {
		t.Fatalf("ListPods after podman restarted: %v", err)
	}
}

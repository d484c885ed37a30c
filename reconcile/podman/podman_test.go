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

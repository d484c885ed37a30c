package agent

import (
	"context"
	"sync"
	"time"

	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
)

// LazyPodman is a podman client that connects on first use and again
// after a failed connect, so that the agent starts, serves its portals and
// reports even while podman is not there yet (socket activation, a podman
// upgrade); once connected, the client's HTTP transport dials the socket
// per connection and so survives podman restarts by itself.
type LazyPodman struct {
	url string

	mu     sync.Mutex
	client *podman.Client
}

// NewLazyPodman returns a client for url ("" for podman.DefaultURL).
func NewLazyPodman(url string) *LazyPodman { return &LazyPodman{url: url} }

func (l *LazyPodman) get(ctx context.Context) (*podman.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		return l.client, nil
	}
	c, err := podman.Dial(ctx, l.url)
	if err != nil {
		return nil, err
	}
	l.client = c
	return c, nil
}

func (l *LazyPodman) ListPods(ctx context.Context) ([]reconcile.ObservedPod, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return c.ListPods(ctx)
}

func (l *LazyPodman) PullImages(ctx context.Context, spec reconcile.PodSpec) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return c.PullImages(ctx, spec)
}

func (l *LazyPodman) CreatePod(ctx context.Context, spec reconcile.PodSpec) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return c.CreatePod(ctx, spec)
}

func (l *LazyPodman) RemovePod(ctx context.Context, name string) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return c.RemovePod(ctx, name)
}

func (l *LazyPodman) StartPod(ctx context.Context, name string, containers []string) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return c.StartPod(ctx, name, containers)
}

func (l *LazyPodman) Events(ctx context.Context, fn func(reconcile.Event)) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return c.Events(ctx, fn)
}

func (l *LazyPodman) Exec(ctx context.Context, container string, cmd []string, timeout time.Duration) (int, error) {
	c, err := l.get(ctx)
	if err != nil {
		return -1, err
	}
	return c.Exec(ctx, container, cmd, timeout)
}

// WatchEvents is the agent's EventWatcher: every event that can change a
// pod (not the execs of readiness probes) asks for a sync.
func (l *LazyPodman) WatchEvents(ctx context.Context, changed func()) error {
	return l.Events(ctx, func(e reconcile.Event) {
		if podman.ChangesState(e.Action) {
			changed()
		}
	})
}

package podman_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	if v := c.APIVersion(); v != "" {
		t.Errorf("APIVersion before podman answered = %q, want empty", v)
	}
	if _, err := c.ListPods(ctx); err != nil {
		t.Fatalf("ListPods once podman answers: %v", err)
	}
	if v := c.APIVersion(); !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(v) {
		t.Errorf("APIVersion once podman answered = %q, want its version", v)
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

// hungPodman serves podman's API on a unix socket the way a podman that
// hangs does: it answers the ping that Dial sends, then accepts every
// other request and never answers it.
func hungPodman(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "podman.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			w.Header().Set("Libpod-API-Version", "4.3.1")
			fmt.Fprint(w, "OK")
			return
		}
		<-hang
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(hang)
		srv.Close()
	})
	return "unix://" + path
}

func TestCalls_to_a_podman_that_never_answers_fail_after_their_deadline(t *testing.T) {
	dialCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := podman.Dial(dialCtx, hungPodman(t))
	if err != nil {
		t.Fatal(err)
	}
	c.CallTimeout, c.PullTimeout, c.StopTimeout = 200*time.Millisecond, 200*time.Millisecond, 0

	spec := reconcile.PodSpec{Name: "web", Containers: []reconcile.ContainerSpec{{Name: "web-app", Image: "busybox", PullPolicy: "IfNotPresent"}}}
	// The callers pass contexts without a deadline, as the agent's
	// reconcile pass does: only the client's own deadline can end a call.
	ctx := context.Background()
	calls := map[string]func() error{
		"ListPods":   func() error { _, err := c.ListPods(ctx); return err },
		"PullImages": func() error { return c.PullImages(ctx, spec) },
		"CreatePod":  func() error { return c.CreatePod(ctx, spec) },
		"StartPod":   func() error { return c.StartPod(ctx, "web", nil) },
		"RemovePod":  func() error { return c.RemovePod(ctx, "web", -1) },
		"Version":    func() error { _, err := c.Version(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			go func() { done <- call() }()
			select {
			case err := <-done:
				if !errors.Is(err, reconcile.ErrPodmanUnavailable) || !strings.Contains(err.Error(), "no answer within") {
					t.Errorf("%s against a hung podman: %v; want ErrPodmanUnavailable saying it did not answer", name, err)
				}
			case <-time.After(time.Minute): // a bound for the test, not the deadline under test
				t.Errorf("%s against a hung podman has not returned after a minute", name)
			}
		})
	}
}

// The network setup of a pod's infra container is what podman does one pod
// at a time (netavark under one lock, docs/performance.md): CreatePod
// starts the infra container before it makes the other containers, so
// that a pod queues for it as early as it can while other pods' containers
// are made meanwhile.
func TestCreatePod_starts_the_infra_container_before_it_makes_the_others(t *testing.T) {
	pm := podmantest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := podman.Dial(ctx, pm.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.StopTimeout = 0
	ct := func(name string) reconcile.ContainerSpec {
		return reconcile.ContainerSpec{Name: name, Image: podmantest.Image, PullPolicy: "Never",
			Command: []string{"sleep", "1000000"}, RestartPolicy: "no"}
	}
	spec := reconcile.PodSpec{Name: "web", Containers: []reconcile.ContainerSpec{ct("web-app"), ct("web-side")}}
	if err := c.CreatePod(ctx, spec); err != nil {
		t.Fatal(err)
	}
	nanos := func(format, name string) int64 {
		t.Helper()
		out, err := pm.Run(ctx, "inspect", "--format", format, name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatalf("inspect %s %s: %q: %v", format, name, out, err)
		}
		return n
	}
	infra, err := pm.Run(ctx, "pod", "inspect", "--format", "{{.InfraContainerID}}", "web")
	if err != nil {
		t.Fatal(err)
	}
	infraStarted := nanos("{{.State.StartedAt.UnixNano}}", strings.TrimSpace(infra))
	for _, name := range []string{"web-app", "web-side"} {
		if created := nanos("{{.Created.UnixNano}}", name); created < infraStarted {
			t.Errorf("%s made %v before the infra container started; want after", name, time.Duration(infraStarted-created))
		}
		if started := nanos("{{.State.StartedAt.UnixNano}}", name); started < infraStarted {
			t.Errorf("%s not started (or before the infra container)", name)
		}
	}
}

// With podman away, the bindings try each request three times and sleep
// 0.6 s in all before they give up. A pass makes several calls, and a
// service with fixed endpoints written meanwhile waited for them past
// SPEC §4's 2 s. After a call found podman away, the next ones fail at
// once: whether it is a client that never connected or one whose podman
// went away.
func TestCalls_after_one_found_podman_away_fail_without_the_bindings_retries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podman.sock")
	ctx := context.Background()
	// failsAtOnce checks that ListPods fails as unavailable sooner than
	// the bindings' sleeps alone would allow.
	failsAtOnce := func(c *podman.Client, when string) {
		t.Helper()
		for range 3 {
			start := time.Now()
			_, err := c.ListPods(ctx)
			if !errors.Is(err, reconcile.ErrPodmanUnavailable) {
				t.Fatalf("%s: ListPods = %v, want ErrPodmanUnavailable", when, err)
			}
			// No call that retries can be this fast, however quiet the
			// machine: the bound is the retries' own sleeps.
			if took := time.Since(start); took >= 600*time.Millisecond {
				t.Errorf("%s: ListPods failed after %v, as slow as the bindings' retries", when, took)
			}
		}
	}

	never := podman.New("unix://" + path)
	if _, err := never.ListPods(ctx); !errors.Is(err, reconcile.ErrPodmanUnavailable) {
		t.Fatalf("ListPods without podman = %v, want ErrPodmanUnavailable", err)
	}
	failsAtOnce(never, "never connected")

	// A podman that answers its ping and lists no pods, then goes away.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Libpod-API-Version", "4.3.1")
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			fmt.Fprint(w, "OK")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "[]")
	})}
	go srv.Serve(ln)
	gone := podman.New("unix://" + path)
	if _, err := gone.ListPods(ctx); err != nil {
		t.Fatalf("ListPods with podman there: %v", err)
	}
	if _, err := never.ListPods(ctx); err != nil {
		t.Fatalf("ListPods once podman is there, by the client that found it away: %v", err)
	}
	srv.Close() // removes the socket
	if _, err := gone.ListPods(ctx); !errors.Is(err, reconcile.ErrPodmanUnavailable) {
		t.Fatalf("ListPods after podman went away = %v, want ErrPodmanUnavailable", err)
	}
	failsAtOnce(gone, "podman gone")
}

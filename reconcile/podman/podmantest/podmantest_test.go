package podmantest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

func TestServiceRunsTheBusyboxImageAndCleansUp(t *testing.T) {
	p := podmantest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := p.Run(ctx, "run", "--rm", podmantest.Image, "sh", "-c", "echo hello from $PATH")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "hello from /bin" {
		t.Errorf("output %q", got)
	}
	if _, err := p.Run(ctx, "run", "-d", "--name", "left-running", podmantest.Image, "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Close: %v", p.Dir, err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), p.Dir) {
		t.Errorf("mounts below %s left after Close", p.Dir)
	}
	assertNetworkGone(t, p)
}

// assertNetworkGone checks that the service's test network left no bridge
// and no iptables rule on the node.
func assertNetworkGone(t *testing.T, p *podmantest.Podman) {
	t.Helper()
	left, err := p.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		t.Errorf("left after Close: %s", l)
	}
}

func TestStartReapsWhatADeadTestProcessLeft(t *testing.T) {
	podmantest.Require(t)
	// A service whose owner is gone: an owner file naming no live process.
	p := podmantest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.Run(ctx, "run", "-d", "--name", "orphan", podmantest.Image, "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "owner"), []byte("999999999 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	podmantest.New(t) // reaps
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("%s not reaped: %v", p.Dir, err)
	}
}

func TestStopServiceKeepsContainersAndStartServiceComesBack(t *testing.T) {
	p := podmantest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := p.Run(ctx, "run", "-d", "--name", "survivor", podmantest.Image, "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	if err := p.StopService(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(ctx, "ps"); err == nil {
		t.Fatal("podman answered with its service stopped")
	}
	if err := p.StartService(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(ctx, "inspect", "--format", "{{.State.Status}}", "survivor")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "running" {
		t.Errorf("container %s after the service came back, want running", got)
	}
	// Close with the service stopped still removes the containers.
	if err := p.StopService(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Close: %v", p.Dir, err)
	}
	assertNetworkGone(t, p)
}

func TestPausedServiceHangsUntilResumed(t *testing.T) {
	p := podmantest.New(t)
	if err := p.PauseService(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := p.Run(ctx, "ps"); err == nil {
		t.Fatal("a paused podman answered")
	}
	if err := p.ResumeService(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.Run(ctx, "ps"); err != nil {
		t.Fatal(err)
	}
	// Close copes with a service left paused.
	if err := p.PauseService(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// A service that dies under running containers gives netavark no chance to
// tear their network down; Close removes the bridge and rules itself.
func TestCloseAfterTheServiceDiedLeavesNoNetwork(t *testing.T) {
	p := podmantest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.Run(ctx, "run", "-d", "--name", "stranded", podmantest.Image, "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(ctx, "inspect", "--format", "{{.State.Pid}}", "stranded")
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(out)
	before, _ := p.Leftovers()
	var netns []string
	for _, l := range before {
		if name, ok := strings.CutPrefix(l, "netns "); ok {
			netns = append(netns, name)
		}
	}
	if len(netns) == 0 {
		t.Fatalf("a running container's network shows no namespace on the bridge (%q); the checks below would prove nothing", before)
	}
	if err := p.KillService(); err != nil {
		t.Fatal(err)
	}
	p.Close() // may report the containers it could not remove
	assertNetworkGone(t, p)
	for _, name := range netns {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); !os.IsNotExist(err) {
			t.Errorf("network namespace %s left after Close: %v", name, err)
		}
	}
	// The container's process, orphaned when conmon died: killed, and
	// reaped by init soon after.
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, err := os.Stat(filepath.Join("/proc", pid)); !os.IsNotExist(err) {
			return fmt.Errorf("container process %s still runs after Close", pid)
		}
		return nil
	})
}

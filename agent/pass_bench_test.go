package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

// idlePodman is a podman with no pods that must not be asked to change
// anything: the pass benchmarks' units all run on another node.
type idlePodman struct{}

var errNotExpected = errors.New("no podman change expected")

func (idlePodman) ListPods(context.Context) ([]reconcile.ObservedPod, error) { return nil, nil }
func (idlePodman) PullImages(context.Context, reconcile.PodSpec) error       { return errNotExpected }
func (idlePodman) CreatePod(context.Context, reconcile.PodSpec) error        { return errNotExpected }
func (idlePodman) RemovePod(context.Context, string, time.Duration) error    { return errNotExpected }
func (idlePodman) StartPod(context.Context, string, []string) error          { return errNotExpected }
func (idlePodman) Exec(context.Context, string, []string, time.Duration) (int, error) {
	return 0, errNotExpected
}

// farUnit is a valid unit with one pod and one service whose pod runs on
// another node (the agent bench's far units, with a service): a pass loads,
// checks, records and plans it, gives its service a portal and the
// service variables, and asks podman for nothing.
func farUnit(i int) string {
	return fmt.Sprintf(`pods: "far-%[1]d": {
	nodeSelector: "bench.cuelet.io/node": "elsewhere"
	labels: app: "far-%[1]d"
	containers: app: {
		image: "localhost/cuelet-busybox:latest"
		command: ["sh", "-c", "sleep 1000000"]
		env: VERSION: "1"
		ports: [{name: "http", containerPort: 8080}]
	}
}
services: "far-%[1]d": {
	selector: app: "far-%[1]d"
	ports: [{name: "http", port: 80, targetPort: "http"}]
}
`, i)
}

// BenchmarkSyncOneChanged1000 is the agent's whole pass (Node.Sync) over
// 1,000 valid units after one file changed, without podman's share: the
// units' pods are for another node. It is the in-process part of
// agent/bench's BenchmarkOneOf1000Units, for `go test -cpuprofile`.
func BenchmarkSyncOneChanged1000(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	manifestDir, stateDir := filepath.Join(dir, "manifests"), filepath.Join(dir, "state")
	for _, d := range []string{manifestDir, stateDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 1000 {
		if err := os.WriteFile(filepath.Join(manifestDir, fmt.Sprintf("far-%03d.cue", i)), []byte(farUnit(i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	node, err := NewNode(ctx, NodeConfig{
		ManifestDir: manifestDir,
		Options:     manifests.Options{PortalCIDR: netip.MustParsePrefix("10.96.0.0/16")},
		StateDir:    stateDir,
		RunDir:      filepath.Join(dir, "run"),
		Podman:      idlePodman{},
		Log:         zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	check := func(rep *Report) {
		b.Helper()
		if len(rep.Errors) > 0 || len(rep.Actions) > 0 || len(rep.Units) != 1000 || len(rep.Services) != 1000 {
			b.Fatalf("%d units, %d services, actions %v, errors %v", len(rep.Units), len(rep.Services), rep.Actions, rep.Errors)
		}
	}
	// The first pass gives every service its portal.
	if rep := node.Sync(ctx); len(rep.Errors) > 0 || len(rep.Units) != 1000 {
		b.Fatalf("first pass: %d units, errors %v", len(rep.Units), rep.Errors)
	}
	check(node.Sync(ctx))
	name := filepath.Join(manifestDir, "far-007.cue")
	i := 0
	for b.Loop() {
		i++
		// A comment changes the bytes, not the unit.
		if err := os.WriteFile(name, fmt.Appendf([]byte(farUnit(7)), "// edit %d\n", i), 0o644); err != nil {
			b.Fatal(err)
		}
		check(node.Sync(ctx))
	}
}

package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/podman/v4/pkg/bindings"
	"github.com/containers/podman/v4/pkg/bindings/kube"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// One podman service for the whole run, so that both sides of a
// comparison meet the same podman.
var (
	svcOnce sync.Once
	svc     *podmantest.Podman
	svcErr  error
)

func service(b *testing.B) *podmantest.Podman {
	b.Helper()
	podmantest.Require(b)
	svcOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		svc, svcErr = podmantest.Start(ctx)
	})
	if svcErr != nil {
		b.Fatal(svcErr)
	}
	return svc
}

func TestMain(m *testing.M) {
	code := m.Run()
	if svc != nil {
		if err := svc.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop podman:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func removeAll(b *testing.B, p *podmantest.Podman) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := p.Run(ctx, "pod", "rm", "--all", "--force", "--time", "0"); err != nil {
		b.Fatal(err)
	}
	if _, err := p.Run(ctx, "volume", "prune", "--force"); err != nil {
		b.Fatal(err)
	}
}

// sleepingPods is a unit of n pods named <prefix>NN whose containers sleep.
func sleepingPods(prefix string, n int, containers ...string) *manifests.Unit {
	u := &manifests.Unit{ID: prefix + ".cue"}
	for i := 0; i < n; i++ {
		var cs []manifests.Container
		for _, name := range containers {
			cs = append(cs, manifests.Container{
				Name: name, Image: podmantest.Image, ImagePullPolicy: "IfNotPresent",
				Command: []string{"sleep", "1000000"},
			})
		}
		u.Pods = append(u.Pods, manifests.Pod{
			Name: fmt.Sprintf("%s%02d", prefix, i), Replicas: 1, RestartPolicy: "Always", Containers: cs,
		})
	}
	return u
}

// kubeYAML is the Kubernetes equivalent of sleepingPods(prefix, n, "app", "side").
func kubeYAML(prefix string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata:
  name: %s%02d
spec:
  restartPolicy: Always
  containers:
  - name: app
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "1000000"]
  - name: side
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "1000000"]
`, prefix, i, podmantest.Image, podmantest.Image)
	}
	return b.String()
}

func newReconciler(b *testing.B, client *podman.Client, runDir string) *reconcile.Reconciler {
	b.Helper()
	rec, err := reconcile.New(reconcile.Config{Podman: client, RunDir: runDir, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	return rec
}

// BenchmarkApply20PodsVsKubePlay creates 20 new two-container pods with
// one cuelet apply pass and, in the same iteration against the same podman,
// the same pods with `podman kube play` (through the same REST API,
// in-process, so that neither pays for starting a CLI). It reports both
// times and their ratio; the goal is a ratio ≤ 0.5 (issue 15).
func BenchmarkApply20PodsVsKubePlay(b *testing.B) {
	p := service(b)
	ctx := context.Background()
	client, conn := dial(b, ctx, p.URL)
	const n = 20
	yaml := kubeYAML("kube", n)
	var applyTotal, kubeTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		removeAll(b, p)
		rec := newReconciler(b, client, b.TempDir())
		b.StartTimer()

		start := time.Now()
		res, err := rec.Apply(ctx, reconcile.Desired{Units: []*manifests.Unit{sleepingPods("web", n, "app", "side")}})
		applyTotal += time.Since(start)
		if err != nil || res.Err() != nil || len(res.Actions) != n {
			b.Fatalf("apply: %d actions, %v, %v", len(res.Actions), err, res.Err())
		}

		start = time.Now()
		rep, err := kube.PlayWithBody(conn, strings.NewReader(yaml), nil)
		kubeTotal += time.Since(start)
		if err != nil || len(rep.Pods) != n {
			b.Fatalf("kube play: %v", err)
		}
		for _, pod := range rep.Pods {
			if len(pod.ContainerErrors) > 0 {
				b.Fatalf("kube play: %v", pod.ContainerErrors)
			}
		}
	}
	b.StopTimer()
	removeAll(b, p)
	applyMS := float64(applyTotal.Milliseconds()) / float64(b.N)
	kubeMS := float64(kubeTotal.Milliseconds()) / float64(b.N)
	b.ReportMetric(applyMS, "apply-ms/op")
	b.ReportMetric(kubeMS, "kubeplay-ms/op")
	b.ReportMetric(applyMS/kubeMS, "ratio")
}

// BenchmarkNoopPass100Pods times an apply pass that finds 100 managed pods
// as they should be; it must make no podman write, and the goal is under
// 150 ms. "listing" is a pass that asks podman (what `cuelet apply` and a
// resync without an event stream do: one container list call); "watching"
// is the agent's resync while an Events stream is live and nothing changed
// (ListPods answers from memory). The first pass of a fresh adapter, which
// also inspects every container once, is reported as cold-ms.
func BenchmarkNoopPass100Pods(b *testing.B) {
	p := service(b)
	ctx := context.Background()
	client, err := podman.Dial(ctx, p.URL)
	if err != nil {
		b.Fatal(err)
	}
	removeAll(b, p)
	u := sleepingPods("noop", 100, "app")
	d := reconcile.Desired{Units: []*manifests.Unit{u}, ServiceEnv: []string{"A_SERVICE_HOST=10.96.0.1"}}
	runDir := b.TempDir()
	if res, err := newReconciler(b, client, runDir).Apply(ctx, d); err != nil || res.Err() != nil {
		b.Fatalf("setup: %v %v", err, res.Err())
	}
	defer removeAll(b, p)

	pass := func(b *testing.B, client *podman.Client) {
		b.Helper()
		rec := newReconciler(b, client, runDir)
		writes := client.Writes()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			res, err := rec.Apply(ctx, d)
			if err != nil || res.Err() != nil || len(res.Actions) != 0 {
				b.Fatalf("no-op pass: %v %v %v", res.Actions, err, res.Err())
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(client.Writes()-writes)/float64(b.N), "writes/op")
	}

	b.Run("listing", func(b *testing.B) {
		cold, err := podman.Dial(ctx, p.URL)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if res, err := newReconciler(b, cold, runDir).Apply(ctx, d); err != nil || len(res.Actions) != 0 {
			b.Fatalf("cold pass: %v %v", res.Actions, err)
		}
		coldMS := float64(time.Since(start).Microseconds()) / 1000
		pass(b, cold)
		b.ReportMetric(coldMS, "cold-ms")
		// The peer: podman's own listing of the same containers, through
		// the same service, in the same run. A listing pass cannot be
		// cheaper than podman answering it.
		var psTotal time.Duration
		const psRuns = 3
		for range psRuns {
			start := time.Now()
			if _, err := p.Run(ctx, "ps", "-a", "--format", "json"); err != nil {
				b.Fatal(err)
			}
			psTotal += time.Since(start)
		}
		psMS := float64(psTotal.Microseconds()) / 1000 / psRuns
		b.ReportMetric(psMS, "podman-ps-ms")
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N)/psMS, "ratio-to-podman-ps")
		b.ReportMetric(float64(cold.Writes()), "writes-total")
	})

	b.Run("watching", func(b *testing.B) {
		watched, err := podman.Dial(ctx, p.URL)
		if err != nil {
			b.Fatal(err)
		}
		ectx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- watched.Events(ectx, func(podman.Event) {}) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
		}()
		// Until the stream has settled every pass lists podman.
		testenv.Eventually(b, 30*time.Second, testenv.True("the listing cache took over", func() bool {
			watched.ListPods(ctx)
			n := watched.Lists()
			watched.ListPods(ctx)
			return watched.Lists() == n
		}))
		lists := watched.Lists()
		pass(b, watched)
		b.ReportMetric(float64(watched.Lists()-lists)/float64(b.N), "lists/op")
	})
}

// dial makes cuelet's client and the bindings' connection (for kube play)
// to podman at url.
func dial(b *testing.B, ctx context.Context, url string) (*podman.Client, context.Context) {
	b.Helper()
	client, err := podman.Dial(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := bindings.NewConnection(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	return client, conn
}

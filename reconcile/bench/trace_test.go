package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containers/podman/v4/pkg/bindings/kube"
	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

// opPath is an API path without its version and the names in it:
// /v4.3.1/libpod/pods/web00/start is /libpod/pods/{name}/start.
func opPath(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) > 0 && strings.HasPrefix(parts[0], "v") && strings.Contains(parts[0], ".") {
		parts = parts[1:]
	}
	for i := 1; i < len(parts); i++ {
		switch parts[i-1] {
		case "pods", "containers", "images", "volumes":
			if parts[i] != "create" && parts[i] != "json" {
				parts[i] = "{name}"
			}
		}
	}
	return "/" + strings.Join(parts, "/")
}

// summary is one line per kind of call (count, total, median and longest
// time) and the calls' span and peak concurrency.
func summary(calls []podmantest.Call) string {
	if len(calls) == 0 {
		return "no calls"
	}
	byOp := map[string][]time.Duration{}
	var ops []string
	first, last := calls[0].Start, calls[0].Start
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, c := range calls {
		if c.End.IsZero() {
			continue // still in flight
		}
		op := strings.SplitN(c.Op, " ", 2)[0] + " " + opPath(strings.SplitN(c.Op, " ", 2)[1])
		if _, ok := byOp[op]; !ok {
			ops = append(ops, op)
		}
		byOp[op] = append(byOp[op], c.End.Sub(c.Start))
		first, last = minTime(first, c.Start), maxTime(last, c.End)
		edges = append(edges, edge{c.Start, 1}, edge{c.End, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int { return a.at.Compare(b.at) })
	inFlight, peak := 0, 0
	for _, e := range edges {
		inFlight += e.d
		peak = max(peak, inFlight)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "%d calls over %v, at most %d in flight\n", len(calls), last.Sub(first).Round(time.Millisecond), peak)
	for _, op := range ops {
		ds := byOp[op]
		var total time.Duration
		for _, d := range ds {
			total += d
		}
		slices.Sort(ds)
		fmt.Fprintf(&s, "  %-45s %3d calls, total %8v, median %7v, longest %7v\n", op, len(ds),
			total.Round(time.Millisecond), ds[len(ds)/2].Round(100*time.Microsecond), ds[len(ds)-1].Round(100*time.Microsecond))
	}
	return s.String()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// BenchmarkApply20PodsTraced is BenchmarkApply20PodsVsKubePlay through
// podmantest.CallLog, with the reconciler running 1, 2, 4 (its default) and 8
// podman operations at once: it logs every pass's calls, which shows what
// podman does one at a time and what in parallel. The proxy adds a hop
// to each call (cuelet makes six per pod, kube play one in all),
// so its times are for comparing concurrencies, not for the ratio.
func BenchmarkApply20PodsTraced(b *testing.B) {
	p := service(b)
	ctx := context.Background()
	tr := podmantest.NewCallLog(b, p.URL)
	client, conn := dial(b, ctx, tr.URL)
	const n = 20
	yaml := kubeYAML("kube", n)
	for _, conc := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			var applyTotal, kubeTotal time.Duration
			for i := 0; i < b.N; i++ {
				removeAll(b, p)
				rec, err := reconcile.New(reconcile.Config{Podman: client, RunDir: b.TempDir(), Concurrency: conc, Log: zerolog.Nop()})
				if err != nil {
					b.Fatal(err)
				}
				tr.Take()
				procs := startProcTrace(b, p.ServicePID())
				start := time.Now()
				res, err := rec.Apply(ctx, reconcile.Desired{Units: []*manifests.Unit{sleepingPods("web", n, "app", "side")}})
				applyTotal += time.Since(start)
				if err != nil || res.Err() != nil || len(res.Actions) != n {
					b.Fatalf("apply: %d actions, %v, %v", len(res.Actions), err, res.Err())
				}
				b.Logf("cuelet apply, %d at once: %s%s", conc, summary(tr.Take()), procs.stop(b))

				procs = startProcTrace(b, p.ServicePID())
				start = time.Now()
				rep, err := kube.PlayWithBody(conn, strings.NewReader(yaml), nil)
				kubeTotal += time.Since(start)
				if err != nil || len(rep.Pods) != n {
					b.Fatalf("kube play: %v", err)
				}
				b.Logf("kube play: %s%s", summary(tr.Take()), procs.stop(b))
			}
			b.ReportMetric(float64(applyTotal.Milliseconds())/float64(b.N), "apply-ms/op")
			b.ReportMetric(float64(kubeTotal.Milliseconds())/float64(b.N), "kubeplay-ms/op")
			b.ReportMetric(float64(applyTotal)/float64(kubeTotal), "ratio")
		})
	}
	removeAll(b, p)
}

package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's own series (SPEC §6); the proxy registers its
// connection and byte counters on the same registry.
type metrics struct {
	syncs    prometheus.Counter
	duration prometheus.Histogram
	errors   prometheus.Counter
	units    *prometheus.GaugeVec
	pods     *prometheus.GaugeVec
	podmanUp prometheus.Gauge
	lastSync prometheus.Gauge
	restarts *prometheus.CounterVec
	ready    atomic.Bool
	health   func() error // nil: healthy
	registry *prometheus.Registry
}

func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		registry: reg,
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cuelet_sync_total", Help: "Sync passes run.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cuelet_sync_duration_seconds",
			Help:    "Duration of sync passes.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cuelet_sync_errors_total", Help: "Sync passes that ended with an error (podman, a pod, the empty-directory guard).",
		}),
		units: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cuelet_units", Help: "Units by validation state.",
		}, []string{"state"}),
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cuelet_pods", Help: "Managed pod replicas by podman state.",
		}, []string{"state"}),
		podmanUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cuelet_podman_up", Help: "1 when the last sync reached podman.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cuelet_last_sync_timestamp_seconds", Help: "When the last sync pass ended.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cuelet_container_restarts_total", Help: "Containers that exited and that cuelet started again, as their restartPolicy says.",
		}, []string{"pod", "replica", "container"}),
	}
	m.registry.MustRegister(m.syncs, m.duration, m.errors, m.units, m.pods, m.podmanUp, m.lastSync, m.restarts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe records one sync pass.
func (m *metrics) observe(r *Report) {
	m.syncs.Inc()
	m.duration.Observe(r.Duration.Seconds())
	if len(r.Errors) > 0 {
		m.errors.Inc()
	}
	valid, invalid := 0, 0
	for _, u := range r.Units {
		if u.Valid {
			valid++
		} else {
			invalid++
		}
	}
	m.units.WithLabelValues("valid").Set(float64(valid))
	m.units.WithLabelValues("invalid").Set(float64(invalid))
	if !r.PodmanDown {
		// With podman away the last known pod states stay on display.
		m.pods.Reset()
		for _, p := range r.Pods {
			m.pods.WithLabelValues(p.State).Inc()
		}
		m.podmanUp.Set(1)
	} else {
		m.podmanUp.Set(0)
	}
	m.lastSync.Set(float64(r.Time.Add(r.Duration).Unix()))
	for _, c := range r.Restarted {
		m.restarts.WithLabelValues(c.Pod, c.Replica, c.Container).Inc()
	}
}

// serveMetrics serves /metrics, /healthz and /readyz on addr until ctx ends.
func (m *metrics) serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if m.health != nil {
			if err := m.health(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "first sync pass not finished", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return serve(ctx, ln, mux, func() {})
}

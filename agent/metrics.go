package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's own series (SPEC §6, docs/operations.md); the
// proxy, the DNS server and the git source register theirs on the same
// registry.
type metrics struct {
	syncs    prometheus.Counter
	duration prometheus.Histogram
	errors   prometheus.Counter
	podmanUp prometheus.Gauge
	lastSync prometheus.Gauge
	pass     *passCollector
	restarts *prometheus.CounterVec
	ready    atomic.Bool
	health   func() error // nil: healthy
	registry *prometheus.Registry
}

// buildInfo is what cuelet_build_info tells.
type buildInfo struct {
	version string
	// podman is the API version of the podman the agent talks to, "" until
	// it has answered once.
	podman func() string
}

func newMetrics(reg *prometheus.Registry, info buildInfo) *metrics {
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
		podmanUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cuelet_podman_up", Help: "1 when the last sync reached podman.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cuelet_last_sync_timestamp_seconds", Help: "When the last sync pass ended.",
		}),
		pass: newPassCollector(),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cuelet_container_restarts_total", Help: "Containers that exited and that cuelet started again, as their restartPolicy says.",
		}, []string{"pod", "replica", "container"}),
	}
	m.registry.MustRegister(m.syncs, m.duration, m.errors, m.podmanUp, m.lastSync, m.restarts, m.pass, newBuildInfoCollector(info),
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
	m.pass.update(r)
	if r.PodmanDown {
		m.podmanUp.Set(0)
	} else {
		m.podmanUp.Set(1)
	}
	m.lastSync.Set(float64(r.Time.Add(r.Duration).Unix()))
	for _, c := range r.Restarted {
		m.restarts.WithLabelValues(c.Pod, c.Replica, c.Container).Inc()
	}
}

// passSnapshot holds the series that describe the node as one pass saw
// it. It is built whole and swapped in, so a scrape sees one pass's
// counts, never a mix of two or a half-rebuilt set.
type passSnapshot struct {
	units     [2]int         // valid, invalid
	pods      map[string]int // podman state → replicas
	endpoints []portEndpoints
}

// portEndpoints is the ready endpoint count of one service port.
type portEndpoints struct {
	service, port string
	ready         int
}

// snapshot computes the series of report r; prev is the snapshot of the
// pass before (nil for none), whose pod states stay on display while
// podman is unreachable.
func snapshot(r *Report, prev *passSnapshot) *passSnapshot {
	s := &passSnapshot{pods: map[string]int{}}
	for _, u := range r.Units {
		if u.Valid {
			s.units[0]++
		} else {
			s.units[1]++
		}
	}
	if r.PodmanDown && prev != nil {
		s.pods = prev.pods
	} else if !r.PodmanDown {
		for _, p := range r.Pods {
			s.pods[p.State]++
		}
	}
	seen := map[[2]string]int{} // service, port → index in s.endpoints
	for _, svc := range r.Services {
		for _, p := range svc.Ports {
			e := portEndpoints{service: svc.Name, port: portLabel(p), ready: len(p.Endpoints)}
			k := [2]string{e.service, e.port}
			if i, ok := seen[k]; ok {
				// An unnamed port number served over both TCP and UDP
				// has one label for both (as in the proxy's series): the
				// protocol with fewer ready endpoints is what an alert
				// should see.
				s.endpoints[i].ready = min(s.endpoints[i].ready, e.ready)
				continue
			}
			seen[k] = len(s.endpoints)
			s.endpoints = append(s.endpoints, e)
		}
	}
	return s
}

// portLabel is the port label of a service port: its name, else its
// number, as in the proxy's series (netproxy.Port.label).
func portLabel(p PortStatus) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Port)
}

// passCollector reports the last snapshot.
type passCollector struct {
	last      atomic.Pointer[passSnapshot]
	units     *prometheus.Desc
	pods      *prometheus.Desc
	endpoints *prometheus.Desc
}

func newPassCollector() *passCollector {
	return &passCollector{
		units:     prometheus.NewDesc("cuelet_units", "Units by validation state.", []string{"state"}, nil),
		pods:      prometheus.NewDesc("cuelet_pods", "Managed pod replicas by podman state.", []string{"state"}, nil),
		endpoints: prometheus.NewDesc("cuelet_service_ready_endpoints", "Ready endpoints of each service port (port: its name, else its number).", []string{"service", "port"}, nil),
	}
}

func (c *passCollector) update(r *Report) { c.last.Store(snapshot(r, c.last.Load())) }

func (c *passCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.units
	ch <- c.pods
	ch <- c.endpoints
}

func (c *passCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.last.Load()
	if s == nil {
		s = &passSnapshot{}
	}
	ch <- prometheus.MustNewConstMetric(c.units, prometheus.GaugeValue, float64(s.units[0]), "valid")
	ch <- prometheus.MustNewConstMetric(c.units, prometheus.GaugeValue, float64(s.units[1]), "invalid")
	for _, state := range slices.Sorted(maps.Keys(s.pods)) {
		ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(s.pods[state]), state)
	}
	for _, e := range s.endpoints {
		ch <- prometheus.MustNewConstMetric(c.endpoints, prometheus.GaugeValue, float64(e.ready), e.service, e.port)
	}
}

// buildInfoCollector reports cuelet_build_info, reading podman's version
// at each scrape: it is unknown until podman first answers.
type buildInfoCollector struct {
	info buildInfo
	desc *prometheus.Desc
}

func newBuildInfoCollector(info buildInfo) *buildInfoCollector {
	return &buildInfoCollector{info: info, desc: prometheus.NewDesc("cuelet_build_info",
		"1, labelled with cuelet's version, the Go version it was built with and the podman API version it talks to (empty until podman answered).",
		[]string{"version", "goversion", "podman_api_version"}, nil)}
}

func (c *buildInfoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *buildInfoCollector) Collect(ch chan<- prometheus.Metric) {
	podman := ""
	if c.info.podman != nil {
		podman = c.info.podman()
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, c.info.version, runtime.Version(), podman)
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

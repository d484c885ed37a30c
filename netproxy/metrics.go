package netproxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the direction label of cuelet_proxy_bytes_total.
const (
	DirectionToEndpoint = "to_endpoint" // bytes from clients to endpoints
	DirectionToClient   = "to_client"   // bytes from endpoints back to clients
)

type metrics struct {
	conns *prometheus.CounterVec
	bytes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cuelet_proxy_connections_total",
			Help: "Connections (TCP) and sessions (UDP) accepted by the userspace proxy, per service port.",
		}, []string{"service", "port"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cuelet_proxy_bytes_total",
			Help: "Bytes relayed by the userspace proxy, per service port and direction (to_endpoint, to_client). During bulk TCP transfers the count is at most a MiB behind.",
		}, []string{"service", "port", "direction"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conns, m.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return m, nil
}

// portMetrics are the counters of one service port, looked up once so the
// data path only does atomic adds.
type portMetrics struct {
	conns      prometheus.Counter
	toEndpoint prometheus.Counter
	toClient   prometheus.Counter
}

func (m *metrics) forPort(service, port string) portMetrics {
	return portMetrics{
		conns:      m.conns.WithLabelValues(service, port),
		toEndpoint: m.bytes.WithLabelValues(service, port, DirectionToEndpoint),
		toClient:   m.bytes.WithLabelValues(service, port, DirectionToClient),
	}
}

// forget drops the series of a service port that is gone, so removed
// services do not stay in /metrics forever.
func (m *metrics) forget(service, port string) {
	m.conns.DeleteLabelValues(service, port)
	m.bytes.DeleteLabelValues(service, port, DirectionToEndpoint)
	m.bytes.DeleteLabelValues(service, port, DirectionToClient)
}

// activeCollector reports cuelet_proxy_active_connections from the
// service ports' own bookkeeping (the connections and sessions they
// track) at scrape time: the gauge cannot drift from what the proxy holds,
// as Inc/Dec pairs on every exit path could, and the data path pays
// nothing for it.
type activeCollector struct {
	p    *Proxy
	desc *prometheus.Desc
}

func newActiveCollector(p *Proxy) *activeCollector {
	return &activeCollector{p: p, desc: prometheus.NewDesc("cuelet_proxy_active_connections",
		"TCP connections and UDP sessions the userspace proxy relays now, per service port.",
		[]string{"service", "port"}, nil)}
}

func (c *activeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *activeCollector) Collect(ch chan<- prometheus.Metric) {
	// TCP and UDP of an unnamed port number share the port label, as in
	// the counters: their counts add up.
	type labels struct{ service, port string }
	sum := map[labels]int{}
	var order []labels
	c.p.mu.Lock()
	for pk, sp := range c.p.ports {
		l := labels{pk.service, pk.port}
		if _, ok := sum[l]; !ok {
			order = append(order, l)
		}
		sum[l] += sp.active()
	}
	c.p.mu.Unlock()
	for _, l := range order {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(sum[l]), l.service, l.port)
	}
}

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

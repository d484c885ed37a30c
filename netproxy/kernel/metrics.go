package kernel

import "github.com/prometheus/client_golang/prometheus"

// collector reads the nftables counters when scraped, so that
// cuelet_proxy_connections_total counts in the kernel mode too, with the
// userspace proxy's name and labels.
type collector struct{ p *Proxy }

var connectionsDesc = prometheus.NewDesc("cuelet_proxy_connections_total",
	"Connections (TCP) and flows (UDP) to each service port, counted by nftables in the kernel data path.",
	[]string{"service", "port"}, nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- connectionsDesc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.p.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(connectionsDesc, err)
		return
	}
	// The userspace proxy's label is the port's; two protocols of one
	// label (dns over UDP and TCP) add up, as they do there.
	sum := map[[2]string]uint64{}
	for _, k := range counters {
		sum[[2]string{k.Service, k.Port}] += k.Connections
	}
	for k, v := range sum {
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.CounterValue, float64(v), k[0], k[1])
	}
}

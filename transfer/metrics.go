package transfer

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	transfersTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "transfers_total",
		Help: "Zone transfers, by type (AXFR, IXFR, IXFR-full) and result (ok, error).",
	}, []string{"type", "result"})
	transferSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "dnsagent", Name: "transfer_duration_seconds",
		Help:    "Time spent waiting for the primary during a transfer.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"type"})
	applySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "dnsagent", Name: "apply_duration_seconds",
		Help:    "Time spent applying a transfer in the backend.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"type"})
	recordsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "transfer_records_total", Help: "Records received in transfers.",
	})
	bytesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "transfer_bytes_total", Help: "Wire bytes received in transfers.",
	})
	backendErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "backend_errors_total",
		Help: "Backend operations that failed, by operation (serial, apply, delete).",
	}, []string{"op"})
)

// RegisterMetrics adds the transfer metrics, and gauges computed from m's zone states, to reg.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(transfersTotal, transferSeconds, applySeconds, recordsTotal, bytesTotal, backendErrorsTotal,
		&zoneCollector{m: m})
}

func observe(s *Summary, failedInBackend bool) {
	result := "ok"
	if s.Result != "applied" {
		result = "error"
	}
	transfersTotal.WithLabelValues(s.Type, result).Inc()
	transferSeconds.WithLabelValues(s.Type).Observe(s.Transfer.Seconds())
	applySeconds.WithLabelValues(s.Type).Observe(s.Apply.Seconds())
	recordsTotal.Add(float64(s.Records))
	bytesTotal.Add(float64(s.Bytes))
	if failedInBackend {
		backendErrorsTotal.WithLabelValues("apply").Inc()
	}
}

var (
	zonesDesc = prometheus.NewDesc("dnsagent_zones", "Zones known to the scheduler, by state (idle, queued, transferring, retrying).",
		[]string{"state"}, nil)
	expiredDesc = prometheus.NewDesc("dnsagent_zones_expired",
		"Zones past their SOA expire without a successful check (still served).", nil, nil)
	uncheckedDesc = prometheus.NewDesc("dnsagent_zones_unchecked",
		"Zones not checked since the agent started (start-up checks still to come).", nil, nil)
	queueDesc = prometheus.NewDesc("dnsagent_queue_depth", "Zones waiting for a transfer worker or notify_delay.", nil, nil)
)

// zoneCollector computes the zone gauges at scrape time from the scheduler's state, by
// counting: no label per zone, so a scrape stays the same size with 100,000 zones.
type zoneCollector struct{ m *Manager }

func (c *zoneCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- zonesDesc
	ch <- expiredDesc
	ch <- uncheckedDesc
	ch <- queueDesc
}

func (c *zoneCollector) Collect(ch chan<- prometheus.Metric) {
	states, expired, unchecked := c.m.counts()
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(zonesDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(expiredDesc, prometheus.GaugeValue, float64(expired))
	ch <- prometheus.MustNewConstMetric(uncheckedDesc, prometheus.GaugeValue, float64(unchecked))
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(states["queued"]))
}

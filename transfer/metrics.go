package transfer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// engineMetrics are one engine's: the agent runs two (the zones', and the catalogs' when
// catalog_zones is set), and each counts its own transfers and zones, so a catalog
// transfer never shows in the zone engine's counters. Config.MetricsSubsystem names them:
// empty gives dnsagent_transfers_total, "catalog" dnsagent_catalog_transfers_total.
type engineMetrics struct {
	transfers       *prometheus.CounterVec
	transferSeconds *prometheus.HistogramVec
	applySeconds    *prometheus.HistogramVec
	records         prometheus.Counter
	bytes           prometheus.Counter
	backendErrors   *prometheus.CounterVec

	zones, expired, unchecked, queue *prometheus.Desc
}

func newMetrics(subsystem string) *engineMetrics {
	name := func(n string) string { return prometheus.BuildFQName("dnsagent", subsystem, n) }
	return &engineMetrics{
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("transfers_total"),
			Help: "Zone transfers, by type (AXFR, IXFR, IXFR-full) and result (ok, error).",
		}, []string{"type", "result"}),
		transferSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    name("transfer_duration_seconds"),
			Help:    "Time spent waiting for the primary during a transfer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"type"}),
		applySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    name("apply_duration_seconds"),
			Help:    "Time spent applying a transfer in the backend.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"type"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("transfer_records_total"), Help: "Records received in transfers.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("transfer_bytes_total"), Help: "Wire bytes received in transfers.",
		}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("backend_errors_total"),
			Help: "Backend operations that failed, by operation (serial, apply, delete).",
		}, []string{"op"}),
		zones: prometheus.NewDesc(name("zones"),
			"Zones known to the scheduler, by state (idle, queued, transferring, retrying).", []string{"state"}, nil),
		expired: prometheus.NewDesc(name("zones_expired"),
			"Zones past their SOA expire without a successful check (still served).", nil, nil),
		unchecked: prometheus.NewDesc(name("zones_unchecked"),
			"Zones not checked since the agent started (start-up checks still to come).", nil, nil),
		queue: prometheus.NewDesc(name("queue_depth"), "Zones waiting for a transfer worker or notify_delay.", nil, nil),
	}
}

// RegisterMetrics adds this engine's transfer metrics, and gauges computed from its zone
// states, to reg.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) {
	x := m.metrics
	reg.MustRegister(x.transfers, x.transferSeconds, x.applySeconds, x.records, x.bytes, x.backendErrors,
		&zoneCollector{m: m})
}

func (x *engineMetrics) observe(s *Summary, failedInBackend bool) {
	result := "ok"
	if s.Result != "applied" {
		result = "error"
	}
	x.transfers.WithLabelValues(s.Type, result).Inc()
	x.transferSeconds.WithLabelValues(s.Type).Observe(s.Transfer.Seconds())
	x.applySeconds.WithLabelValues(s.Type).Observe(s.Apply.Seconds())
	x.records.Add(float64(s.Records))
	x.bytes.Add(float64(s.Bytes))
	if failedInBackend {
		x.backendErrors.WithLabelValues("apply").Inc()
	}
}

// zoneCollector computes the zone gauges at scrape time from the scheduler's state, by
// counting: no label per zone, so a scrape stays the same size with 100,000 zones.
type zoneCollector struct{ m *Manager }

func (c *zoneCollector) Describe(ch chan<- *prometheus.Desc) {
	x := c.m.metrics
	ch <- x.zones
	ch <- x.expired
	ch <- x.unchecked
	ch <- x.queue
}

func (c *zoneCollector) Collect(ch chan<- prometheus.Metric) {
	x := c.m.metrics
	states, expired, unchecked := c.m.counts()
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(x.zones, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(x.expired, prometheus.GaugeValue, float64(expired))
	ch <- prometheus.MustNewConstMetric(x.unchecked, prometheus.GaugeValue, float64(unchecked))
	ch <- prometheus.MustNewConstMetric(x.queue, prometheus.GaugeValue, float64(states["queued"]))
}

package catalog

import "github.com/prometheus/client_golang/prometheus"

var (
	membersDesc = prometheus.NewDesc("dnsagent_catalog_members",
		"Member zones listed in the catalog version applied.", []string{"catalog"}, nil)
	serialDesc = prometheus.NewDesc("dnsagent_catalog_serial",
		"Serial of the catalog version applied.", []string{"catalog"}, nil)
	brokenDesc = prometheus.NewDesc("dnsagent_catalog_broken",
		"1 while the catalog's latest version is broken (RFC 9432) and nothing is applied.", []string{"catalog"}, nil)
	pendingDesc = prometheus.NewDesc("dnsagent_catalog_pending_removal",
		"Member zones a version held back by the mass-deletion guard would delete.", []string{"catalog"}, nil)
	failedDesc = prometheus.NewDesc("dnsagent_catalog_member_failures",
		"Member zones whose creation or deletion failed and is retried.", []string{"catalog"}, nil)
)

// RegisterMetrics adds the per-catalog gauges, computed at scrape time from c's state, and
// the metrics of the catalogs' own transfer engine (dnsagent_catalog_transfers_total,
// dnsagent_catalog_zones...) to reg.
func (c *Consumer) RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(collector{c})
	c.transfer.RegisterMetrics(reg)
}

type collector struct{ c *Consumer }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{membersDesc, serialDesc, brokenDesc, pendingDesc, failedDesc} {
		ch <- d
	}
}

func (col collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range col.c.Statuses() {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, st.Catalog)
		}
		gauge(membersDesc, float64(st.Members))
		if st.Serial != nil {
			gauge(serialDesc, float64(*st.Serial))
		}
		broken, pending := 0.0, 0.0
		if st.Broken {
			broken = 1
		}
		if st.PendingRemoval != nil {
			pending = float64(st.PendingRemoval.Removes)
		}
		gauge(brokenDesc, broken)
		gauge(pendingDesc, pending)
		gauge(failedDesc, float64(len(st.Failed)))
	}
}

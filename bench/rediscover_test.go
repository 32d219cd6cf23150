package bench

// What a rediscover costs PowerDNS as the zones it holds grow (issue 15): every CREATE
// through the powerdns backend waits for one begun after its commit (PowerDNS's zone
// cache learns a new zone no other way), so with a fixed number of CREATEs in flight it
// bounds the rate of creates.

import (
	"flag"
	"testing"

	"github.com/dnsagent/dnsagent/tests/harness"
)

var flagRediscoverZones = flag.String("rediscover-zones", "10000,30000,100000", "TestBenchRediscover: zone counts, ascending")

// TestBenchRediscover fills one PowerDNS database with small zones as the PowerDNS peer
// of the many-zones table does (domain rows in bulk, then one rediscover), up to each
// count in turn, and times `pdns_control rediscover` there (DNSAGENT_BENCH=1).
func TestBenchRediscover(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1")
	}
	harness.Require(t, "pdns_server", "pdns_control", "mariadbd", "mariadb-install-db")
	m := harness.StartMariaDB(t)
	dbName := m.NewPDNSDatabase(t)
	ps := harness.StartPDNS(t, m, dbName, harness.PDNSOptions{ZoneCache: true})
	db := openDB(t, m, dbName)
	held := 0
	for _, n := range parseCounts(t, *flagRediscoverZones) {
		var zones []string
		for i := held; i < n; i++ {
			zones = append(zones, manyZoneName(i))
		}
		if r := pdnsRows(t, db, ps, zones); r.Served != len(zones) {
			t.Fatalf("%d zones: %d of the %d added are served", n, r.Served, len(zones))
		}
		held = max(held, n)
		// The statistics the agent's powerdns backend refreshes after many creates.
		if _, err := db.Exec("ANALYZE TABLE records"); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d zones held: pdns_control rediscover %s (median of 3)", held, fmtDur(rediscoverTime(t, ps)))
	}
}

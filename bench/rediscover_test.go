package bench

// What a rediscover costs PowerDNS as the zones it holds grow (issue 15): every CREATE
// through the powerdns backend waits for one begun after its commit (PowerDNS's zone
// cache learns a new zone no other way), so with a fixed number of CREATEs in flight it
// bounds the rate of creates.

import (
	"database/sql"
	"flag"
	"fmt"
	"testing"

	"github.com/dnsagent/dnsagent/tests/harness"
)

var (
	flagRediscoverZones   = flag.String("rediscover-zones", "10000,30000,100000", "TestBenchRediscover: zone counts, ascending")
	flagRediscoverCreates = flag.Int("rediscover-creates", 1000, "TestBenchRediscover: CREATEs through the agent once the last count is held, then as many zones through PowerDNS's API")
)

// TestBenchRediscover fills one PowerDNS database with small zones as the PowerDNS peer
// of the many-zones table does (domain rows in bulk, then one rediscover), up to each
// count in turn, and times `pdns_control rediscover` there. Then the agent's powerdns
// backend, on the same database and pdns_server, creates -rediscover-creates more small
// zones, manyInFlight CREATEs at a time, as in the many-zones table; then PowerDNS's own
// HTTP API creates as many more, manyInFlight requests at a time: the API adds each zone
// to the zone cache itself, so it needs no rediscover (DNSAGENT_BENCH=1).
func TestBenchRediscover(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1")
	}
	harness.Require(t, "named", "pdns_server", "pdns_control", "mariadbd", "mariadb-install-db")
	m := harness.StartMariaDB(t)
	dbName := m.NewPDNSDatabase(t)
	ps := harness.StartPDNS(t, m, dbName, harness.PDNSOptions{ZoneCache: true, API: true})
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
		t.Logf("%d zones held: pdns_control rediscover %s, rping %s (medians of 3)", held,
			fmtDur(controlTime(t, ps, "rediscover")), fmtDur(controlTime(t, ps, "rping")))
	}
	if *flagRediscoverCreates <= 0 {
		return
	}
	zones := make([]string, *flagRediscoverCreates)
	for i := range zones {
		zones[i] = manyZoneName(held + i)
	}
	p := startManyPrimary(t, zones)
	base := harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", CreateTimeout: "60"}
	a := startAgent(t, "powerdns-held", agentBin, powerdnsConfig(base, m, dbName, ps))
	before := mariadbLoad(t, db)
	r := createMany(t, a, zones, map[string]int{"pdns_server": ps.PID(), "mariadbd": m.PID()})
	load := mariadbLoad(t, db).since(before, len(zones))
	r.Served = countServed(zones, dnsServes(ps.Addr()))
	t.Logf("%d CREATEs with %d zones held, %d in flight: %.0f zones/s, p99 %s, %d failed, %d served; CPU %s; MariaDB %s; %s",
		len(zones), held, manyInFlight, r.rate(), fmtDur(r.P99), r.Failed, r.Served, r.CPU, load, r.Comment)

	for i := range zones {
		zones[i] = manyZoneName(held + len(zones) + i)
	}
	before = mariadbLoad(t, db)
	r = pdnsAPI(t, m, ps, zones)
	load = mariadbLoad(t, db).since(before, len(zones))
	t.Logf("%d zones through PowerDNS's API with %d zones held, %d in flight: %.0f zones/s, p99 %s, %d failed, %d served; CPU %s; MariaDB %s",
		len(zones), held+len(zones), manyInFlight, r.rate(), fmtDur(r.P99), r.Failed, r.Served, r.CPU, load)
}

// serverLoad is what MariaDB counted since it started: statements its clients sent
// (Questions) and connections opened.
type serverLoad struct{ statements, connections int64 }

func mariadbLoad(t *testing.T, db *sql.DB) serverLoad {
	rows, err := db.Query(`SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Connections')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var l serverLoad
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			t.Fatal(err)
		}
		if name == "Questions" {
			l.statements = v
		} else {
			l.connections = v
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return l
}

// since says what happened between before and l, per zone of n: every client's
// statements (the agent's or the API's, and PowerDNS's own rediscovers) and connections.
func (l serverLoad) since(before serverLoad, n int) string {
	return fmt.Sprintf("%.1f statements and %.2f new connections a zone",
		float64(l.statements-before.statements)/float64(n), float64(l.connections-before.connections)/float64(n))
}

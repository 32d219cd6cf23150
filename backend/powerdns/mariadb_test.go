package powerdns

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/tests/harness"
)

// These tests run the backend against a private MariaDB holding PowerDNS's own schema.
// What pdns_server makes of the rows is proven in tests/powerdns_test.go.

// mariadb is one server for the whole test; every subtest gets a fresh database.
type mariadb struct {
	*harness.MariaDB
}

func startMariaDB(t *testing.T) mariadb {
	harness.Require(t, "mariadbd", "mariadb-install-db")
	return mariadb{harness.StartMariaDB(t)}
}

// backend returns a backend on a new database and a handle to inspect it.
func (m mariadb) backend(t testing.TB) (*Backend, *sql.DB) {
	t.Helper()
	name := m.NewPDNSDatabase(t)
	cfg := testConfig()
	cfg.DSN = m.DSN(name)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, m.DB(t, name)
}

func testConfig() Config {
	return Config{Account: DefaultAccount, ZoneKind: DefaultZoneKind, BatchSize: DefaultBatchSize}
}

func TestMariaDB(t *testing.T) {
	m := startMariaDB(t)
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Backend {
			b, _ := m.backend(t)
			return b
		})
	})
	t.Run("StorageFacts", func(t *testing.T) { testStorageFacts(t, m) })
	t.Run("Ownership", func(t *testing.T) { testOwnership(t, m) })
	t.Run("DeleteEveryTable", func(t *testing.T) { testDeleteEveryTable(t, m) })
	t.Run("Apply", func(t *testing.T) { testApply(t, m) })
	t.Run("ApplyInconsistent", func(t *testing.T) { testApplyInconsistent(t, m) })
	t.Run("BatchesAndRetry", func(t *testing.T) { testBatchesAndRetry(t, m) })
}

// dbRow is a records row as stored, in a form easy to compare.
func dbRows(t testing.TB, db *sql.DB, zone string) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `
		SELECT r.name, COALESCE(r.type, 'NULL'), COALESCE(r.content, 'NULL'), COALESCE(r.ttl, -1),
		       COALESCE(r.prio, -1), r.auth, COALESCE(r.ordername, 'NULL'), r.disabled
		FROM records r JOIN domains d ON d.id = r.domain_id WHERE d.name = ? ORDER BY 1, 2, 3`, zone)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, typ, content, ordername string
		var ttl, prio, auth, disabled int
		if err := rows.Scan(&name, &typ, &content, &ttl, &prio, &auth, &ordername, &disabled); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s|%s|%s|%d|%d|auth=%d|%s|%d", name, typ, content, ttl, prio, auth, ordername, disabled))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func parseRRs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

const factsZone = `
Example.COM. 3600 IN SOA ns1.example.com. hostmaster.example.com. 7 3600 600 86400 300
example.com. 3600 IN NS ns1.example.com.
ns1.example.com. 3600 IN A 192.0.2.1
WWW.example.com. 300 IN A 192.0.2.2
example.com. 300 IN MX 10 mail.example.net.
_sip._tcp.example.com. 300 IN SRV 5 20 5060 sip.example.com.
txt.example.com. 300 IN TXT "a \"quoted\" word" "and back\\slash" "semi;colon"
alias.example.com. 300 IN CNAME www.example.com.
sub.example.com. 300 IN NS ns.sub.example.com.
sub.example.com. 300 IN NS ns.elsewhere.net.
sub.example.com. 300 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE9F6A1CFDD27B8E0F2A8F4E6A
ns.sub.example.com. 300 IN A 192.0.2.53
deep.ns.sub.example.com. 300 IN A 192.0.2.54
a.b.c.example.com. 300 IN A 192.0.2.3
`

func testStorageFacts(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(factsZone), "\n") {
		lines = append(lines, l)
	}
	if err := b.Create(t.Context(), "example.com.", backendtest.Stream(parseRRs(t, lines...))); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"_sip._tcp.example.com|SRV|20 5060 sip.example.com|300|5|auth=1|NULL|0",
		"_tcp.example.com|NULL|NULL|-1|-1|auth=1|NULL|0", // ENT
		"a.b.c.example.com|A|192.0.2.3|300|0|auth=1|NULL|0",
		"alias.example.com|CNAME|www.example.com|300|0|auth=1|NULL|0",
		"b.c.example.com|NULL|NULL|-1|-1|auth=1|NULL|0", // ENT
		"c.example.com|NULL|NULL|-1|-1|auth=1|NULL|0",   // ENT
		"deep.ns.sub.example.com|A|192.0.2.54|300|0|auth=0|NULL|0",
		"example.com|MX|mail.example.net|300|10|auth=1|NULL|0",
		"example.com|NS|ns1.example.com|3600|0|auth=1|NULL|0",
		"example.com|SOA|ns1.example.com hostmaster.example.com 7 3600 600 86400 300|3600|0|auth=1|NULL|0",
		"ns.sub.example.com|A|192.0.2.53|300|0|auth=0|NULL|0",
		"ns1.example.com|A|192.0.2.1|3600|0|auth=1|NULL|0",
		"sub.example.com|DS|12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE9F6A1CFDD27B8E0F2A8F4E6A|300|0|auth=1|NULL|0",
		"sub.example.com|NS|ns.elsewhere.net|300|0|auth=0|NULL|0",
		"sub.example.com|NS|ns.sub.example.com|300|0|auth=0|NULL|0",
		`txt.example.com|TXT|"a \"quoted\" word" "and back\\slash" "semi;colon"|300|0|auth=1|NULL|0`,
		"www.example.com|A|192.0.2.2|300|0|auth=1|NULL|0",
	}
	if got := dbRows(t, db, "example.com"); !slices.Equal(got, want) {
		t.Errorf("records rows:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	var typ, account string
	if err := db.QueryRow(`SELECT type, account FROM domains WHERE name = 'example.com'`).Scan(&typ, &account); err != nil {
		t.Fatal(err)
	}
	if typ != "NATIVE" || account != DefaultAccount {
		t.Errorf("domains row: type %q account %q, want NATIVE %q", typ, account, DefaultAccount)
	}
}

package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
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

func startMariaDB(t *testing.T) mariadb { return mariadb{harnessMariaDB(t)} }

func harnessMariaDB(t testing.TB) *harness.MariaDB {
	harness.Require(t, "mariadbd", "mariadb-install-db")
	return harness.StartMariaDB(t)
}

// backend returns a backend on a new database and a handle to inspect it.
func (m mariadb) backend(t testing.TB) (*Backend, *sql.DB) {
	t.Helper()
	return m.backendWith(t, testConfig())
}

func (m mariadb) backendWith(t testing.TB, cfg Config) (*Backend, *sql.DB) {
	t.Helper()
	name := m.NewPDNSDatabase(t)
	cfg.DSN = m.DSN(name)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, m.DB(t, name)
}

func testConfig() Config {
	return Config{Account: DefaultAccount, ZoneKind: DefaultZoneKind, BatchSize: DefaultBatchSize, NameIndex: true}
}

func TestMariaDB(t *testing.T) {
	m := startMariaDB(t)
	t.Run("Conformance", func(t *testing.T) {
		var dbs sync.Map // *Backend -> *sql.DB
		backendtest.RunWith(t, func(t *testing.T) backend.Backend {
			b, db := m.backend(t)
			dbs.Store(b, db)
			return b
		}, backendtest.Options{Contents: func(t *testing.T, b backend.Backend, zone string) []dns.RR {
			db, _ := dbs.Load(b)
			return rowRecords(t, db.(*sql.DB), zone)
		}})
	})
	t.Run("StorageFacts", func(t *testing.T) { testStorageFacts(t, m) })
	t.Run("Ownership", func(t *testing.T) { testOwnership(t, m) })
	t.Run("DeleteEveryTable", func(t *testing.T) { testDeleteEveryTable(t, m) })
	t.Run("DeleteDropsLeftVersions", func(t *testing.T) { testDeleteDropsLeftVersions(t, m) })
	t.Run("Apply", func(t *testing.T) { testApply(t, m) })
	t.Run("ApplyInconsistent", func(t *testing.T) { testApplyInconsistent(t, m) })
	t.Run("Duplicates", func(t *testing.T) {
		runDuplicates(t, func(t *testing.T) (*Backend, func() []string) {
			b, db := m.backend(t)
			return b, dumpFor(t, db)
		})
	})
	t.Run("ApplyWithoutNameIndex", func(t *testing.T) {
		runScenarios(t, func(t *testing.T) (*Backend, func() []string) {
			cfg := testConfig()
			cfg.NameIndex = false
			b, db := m.backendWith(t, cfg)
			return b, dumpFor(t, db)
		})
	})
	t.Run("RandomChangesInBatches", func(t *testing.T) {
		runRandomChanges(t, 6, func(t *testing.T) (*Backend, func() []string) {
			cfg := testConfig()
			cfg.BatchSize = 3
			b, db := m.backendWith(t, cfg)
			return b, func() []string { return dbRows(t, db, "r.test") }
		})
	})
	t.Run("Batches", func(t *testing.T) { testBatches(t, m) })
	t.Run("Fingerprint", func(t *testing.T) { testFingerprint(t, m) })
	t.Run("BurstReusesConnections", func(t *testing.T) { testBurstReusesConnections(t, m) })
	t.Run("ReadCommitted", func(t *testing.T) { testReadCommitted(t, m) })
	t.Run("CreatedMeanwhile", func(t *testing.T) { testCreatedMeanwhile(t, m) })
	t.Run("LargeZone", func(t *testing.T) { testLargeZone(t, m) })
	t.Run("StatisticsRefreshed", func(t *testing.T) { testStatisticsRefreshed(t, m) })
}

// rowRecords reads the zone's record rows back as records, the way pdns_server serves
// them (names get their trailing dot back, MX and SRV their prio).
func rowRecords(t *testing.T, db *sql.DB, zone string) []dns.RR {
	t.Helper()
	rows, err := db.Query(`SELECT r.name, r.type, r.content, r.ttl, r.prio FROM records r
		JOIN domains d ON d.id = r.domain_id WHERE d.name = ? AND r.type IS NOT NULL`, strings.TrimSuffix(zone, "."))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var rrs []dns.RR
	for rows.Next() {
		var name, typ, content string
		var ttl, prio int
		if err := rows.Scan(&name, &typ, &content, &ttl, &prio); err != nil {
			t.Fatal(err)
		}
		if typ == "MX" || typ == "SRV" {
			content = fmt.Sprintf("%d %s", prio, content)
		}
		rr, err := dns.NewRR(fmt.Sprintf("%s. %d IN %s %s", name, ttl, typ, content))
		if err != nil {
			t.Fatalf("row %s %s %q: %v", name, typ, content, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

// dbRows returns the zone's records rows as sorted strings, every column shown.
func dbRows(t testing.TB, db *sql.DB, zone string) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `
		SELECT r.name, COALESCE(r.type, 'NULL'), COALESCE(r.content, 'NULL'), COALESCE(r.ttl, -1),
		       COALESCE(r.prio, -1), r.auth, COALESCE(r.ordername, 'NULL'), r.disabled
		FROM records r JOIN domains d ON d.id = r.domain_id WHERE d.name = ?`, zone)
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
	slices.Sort(out)
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
	lines := strings.Split(strings.TrimSpace(factsZone), "\n")
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

func dumpFor(t testing.TB, db *sql.DB) func() []string {
	return func() []string { return dbRows(t, db, "example.com") }
}

func testApply(t *testing.T, m mariadb) {
	runScenarios(t, func(t *testing.T) (*Backend, func() []string) {
		b, db := m.backend(t)
		return b, dumpFor(t, db)
	})
}

func testApplyInconsistent(t *testing.T, m mariadb) {
	runInconsistent(t, func(t *testing.T) (*Backend, func() []string) {
		b, db := m.backend(t)
		return b, dumpFor(t, db)
	})
}

// Zones created by other tools (pdnsutil leaves account NULL) or for another account
// are never listed, changed or deleted, and CREATE of one fails naming the owner.
func testOwnership(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	ctx := t.Context()
	for _, stmt := range []string{
		`INSERT INTO domains (name, type, account) VALUES ('other.test', 'NATIVE', 'designate-2'), ('null.test', 'NATIVE', NULL), ('case.test', 'NATIVE', 'DNSAGENT')`,
		`INSERT INTO records (domain_id, name, type, content, ttl, prio, auth) SELECT id, name, 'SOA', 'ns hostmaster 5 1 1 1 1', 300, 0, 1 FROM domains`,
		`INSERT INTO records (domain_id, name, type, content, ttl, prio, auth) SELECT id, CONCAT('www.', name), 'A', '192.0.2.1', 300, 0, 1 FROM domains`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string][]string{}
	for _, z := range []string{"other.test", "null.test", "case.test"} {
		before[z] = dbRows(t, db, z)
	}
	if zones, err := b.Zones(ctx); err != nil || len(zones) != 0 {
		t.Errorf("Zones = %v, %v; want none", zones, err)
	}
	for z := range before {
		zone := z + "."
		if _, err := b.Serial(ctx, zone); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Serial(%s) = %v", zone, err)
		}
		if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 9, 3))); !errors.Is(err, backend.ErrNotOwned) ||
			!strings.Contains(err.Error(), "account") {
			t.Errorf("Create(%s) = %v, want a clear ErrNotOwned", zone, err)
		}
		if err := b.Replace(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 9, 3))); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Replace(%s) = %v", zone, err)
		}
		if err := b.Delete(ctx, zone); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Delete(%s) = %v", zone, err)
		}
	}
	for z, rows := range before {
		if after := dbRows(t, db, z); !slices.Equal(rows, after) {
			t.Errorf("%s changed: %v -> %v", z, rows, after)
		}
	}
}

// Delete removes the zone from every table PowerDNS keeps per zone, and nothing of
// another zone.
func testDeleteEveryTable(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	ctx := t.Context()
	for _, z := range []string{"example.com.", "keep.test."} {
		if err := b.Create(ctx, z, backendtest.Stream(backendtest.Zone(z, 1, 10))); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{
		`INSERT INTO domainmetadata (domain_id, kind, content) SELECT id, 'SOA-EDIT', 'INCEPTION-INCREMENT' FROM domains`,
		`INSERT INTO comments (domain_id, name, type, modified_at, account, comment) SELECT id, name, 'SOA', 0, 'x', 'hello' FROM domains`,
		`INSERT INTO cryptokeys (domain_id, flags, active, content) SELECT id, 257, 1, 'Private-key-format: v1.2' FROM domains`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	var id int64
	if err := db.QueryRowContext(ctx, `SELECT id FROM domains WHERE name = 'example.com'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"records", "domainmetadata", "comments", "cryptokeys"} {
		var mine, others int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE domain_id = ?`, id).Scan(&mine)
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE domain_id <> ?`, id).Scan(&others)
		if mine != 0 || others == 0 {
			t.Errorf("%s: %d rows of the deleted zone left, %d of the other zone", table, mine, others)
		}
	}
	var n int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM domains WHERE name = 'example.com'`).Scan(&n)
	if n != 0 {
		t.Error("the domains row is still there")
	}
}

// A staged load whose clean-up failed leaves a retired version of the zone, its SOA row
// named for the zone (dropRetired is best effort). Deleting the zone deletes that version
// too: its SOA would let pdns_server without the zone cache find the deleted zone again,
// served from the old version.
func testDeleteDropsLeftVersions(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	ctx := t.Context()
	const zone = "left.test."
	if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 2, 10))); err != nil {
		t.Fatal(err)
	}
	retired := "retired-" + stagingTag("left.test") + "-1" + stagingSuffix
	res, err := db.ExecContext(ctx, `INSERT INTO domains (name, type, account) VALUES (?, 'NATIVE', ?)`, retired, DefaultAccount)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := res.LastInsertId()
	if _, err := db.ExecContext(ctx, `INSERT INTO records (domain_id, name, type, content, ttl, disabled, auth)
		VALUES (?, 'left.test', 'SOA', 'ns.left.test hostmaster.left.test 1 3600 600 86400 60', 60, 0, 1),
		       (?, 'www.left.test', 'A', '192.0.2.1', 60, 0, 1)`, id, id); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, zone); err != nil {
		t.Fatal(err)
	}
	var soas, domains, rows int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE name = 'left.test' AND type = 'SOA'`).Scan(&soas)
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM domains WHERE name LIKE '%left%' OR name LIKE ?`, "%"+stagingTag("left.test")+"%").Scan(&domains)
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE domain_id = ?`, id).Scan(&rows)
	if soas != 0 || domains != 0 || rows != 0 {
		t.Errorf("after the delete: %d SOA rows named for the zone, %d domains rows of it, %d rows of the retired version; want none",
			soas, domains, rows)
	}
}

// Batches are cut by rows and by bytes (64000-byte TXT rows would otherwise exceed
// max_allowed_packet), and the result is the same zone.
func testBatches(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	b.batch = 7
	zone := "example.com."
	rrs := backendtest.Zone(zone, 1, 100)
	big := strings.Repeat(`"`+strings.Repeat("x", 250)+`" `, 250)
	for i := range 40 {
		rrs = append(rrs, parseRRs(t, fmt.Sprintf("big%d.example.com. 300 IN TXT %s", i, big))...)
	}
	if err := b.Create(t.Context(), zone, backendtest.Stream(backendtest.Batches(rrs, 13)...)); err != nil {
		t.Fatal(err)
	}
	if got := len(dbRows(t, db, "example.com")); got != len(rrs) {
		t.Errorf("%d rows, want %d", got, len(rrs))
	}
}

// A name index dropped behind the agent's back costs one failed change, then is created
// again.
func TestMariaDBNameIndexDropped(t *testing.T) {
	m := startMariaDB(t)
	b, db := m.backend(t)
	ctx := t.Context()
	base := mustRRs(t, scenarioBase)
	if err := b.Create(ctx, "example.com.", backendtest.Stream(base)); err != nil {
		t.Fatal(err)
	}
	if err := b.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE records DROP INDEX dnsagent_parent, DROP COLUMN dnsagent_parent`); err != nil {
		t.Fatal(err)
	}
	// The delete leaves b.c and c without data: whether anything is below them is asked.
	cs, _ := buildChange(t, base, []scenarioStep{{del: []string{"a.b.c.example.com. 300 IN A 192.0.2.3"}}})
	if err := b.Apply(ctx, "example.com.", cs); err == nil || !strings.Contains(err.Error(), "dnsagent_parent") {
		t.Errorf("Apply with the index column gone = %v, want the database's complaint", err)
	}
	if err := b.Apply(ctx, "example.com.", cs); err != nil {
		t.Fatalf("the same change again: %v", err)
	}
	var n int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = 'dnsagent_parent'`).Scan(&n)
	if n == 0 {
		t.Error("the name index was not created again")
	}
}

// The fingerprint is the zone's row count (ENT rows included): a row deleted behind the
// agent's back changes it; a zone not in the database is not found.
func testFingerprint(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	ctx := t.Context()
	if err := b.Create(ctx, "example.com.", backendtest.Stream(parseRRs(t, strings.Split(strings.TrimSpace(factsZone), "\n")...))); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d rows", len(dbRows(t, db, "example.com")))
	if got, err := b.Fingerprint(ctx, "example.com."); err != nil || got != want {
		t.Fatalf("fingerprint %q, %v; want %q", got, err, want)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM records WHERE name = 'www.example.com'`); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Fingerprint(ctx, "example.com."); err != nil || got == want {
		t.Errorf("fingerprint after a row was deleted: %q, %v; want it changed from %q", got, err, want)
	}
	if _, err := b.Fingerprint(ctx, "missing.example."); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("fingerprint of a missing zone: %v, want ErrNotFound", err)
	}
}

// Rounds of concurrent creates reuse the connections of the first round: a burst of
// CREATEs does not open (and authenticate) a connection per zone.
func testBurstReusesConnections(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	ctx := t.Context()
	connections := func() int {
		var name string
		var n int
		if err := db.QueryRowContext(ctx, `SHOW GLOBAL STATUS LIKE 'Connections'`).Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const concurrent = 16
	round := func(r int) {
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				zone := fmt.Sprintf("r%d-z%d.example.", r, i)
				if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 1, 3))); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	round(0)
	before := connections()
	for r := 1; r <= 3; r++ {
		round(r)
	}
	// A round may need a few more than the first one had open; not one per create.
	if opened := connections() - before; opened >= concurrent {
		t.Errorf("3 rounds of %d concurrent creates opened %d new connections, want the first round's reused", concurrent, opened)
	}
}

// Every transaction runs READ COMMITTED, as PowerDNS's own do, whatever the server's
// default (REPEATABLE READ).
func testReadCommitted(t *testing.T, m mariadb) {
	b, _ := m.backend(t)
	for range 3 { // new and reused connections alike
		tx, err := b.store.begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var level string
		err = tx.(*sqlTx).tx.QueryRowContext(t.Context(), `SELECT @@tx_isolation`).Scan(&level)
		tx.rollback()
		if err != nil || level != "READ-COMMITTED" {
			t.Fatalf("transaction isolation %q, %v; want READ-COMMITTED", level, err)
		}
	}
}

// sideEffect is a Source that runs fn when the transfer is first read: after Create's
// early check, before its transaction.
type sideEffect struct {
	backend.Source
	fn func()
}

func (s *sideEffect) Next() ([]dns.RR, error) {
	if s.fn != nil {
		s.fn()
		s.fn = nil
	}
	return s.Source.Next()
}

// A zone that someone else creates while the agent transfers it is left alone, and the
// error says whose it is; one of the agent's own says it exists.
func testCreatedMeanwhile(t *testing.T, m mariadb) {
	b, db := m.backend(t)
	for _, tt := range []struct{ account, want string }{
		{"designate-2", `with account "designate-2", not the agent's "dnsagent"`},
		{DefaultAccount, "exists already"},
	} {
		zone := strings.ReplaceAll(tt.account, "-", "") + ".example."
		name := strings.TrimSuffix(zone, ".")
		src := &sideEffect{Source: backendtest.Stream(backendtest.Zone(zone, 1, 3)), fn: func() {
			if _, err := db.Exec(`INSERT INTO domains (name, type, account) VALUES (?, 'NATIVE', ?)`, name, tt.account); err != nil {
				t.Fatal(err)
			}
		}}
		err := b.Create(t.Context(), zone, src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("create of a zone %s created meanwhile: %v, want %q", tt.account, err, tt.want)
		}
		if tt.account != DefaultAccount && !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("create of a zone %s created meanwhile: %v, want ErrNotOwned", tt.account, err)
		}
		if rows := dbRows(t, db, name); len(rows) != 0 {
			t.Errorf("%s: rows written: %v", zone, rows)
		}
	}
}

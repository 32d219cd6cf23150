package tests

// End-to-end tests of issue 13: a primary that answers every IXFR with the whole zone
// (BIND with provide-ixfr no, as Designate's MiniDNS and NSD do) and the agent applying
// only the difference to the zone each backend holds. TestDiffN is acceptance point N.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

const diffRecords = 20000

// diffEnv is a full-zone-only primary serving zone and an agent on some backend.
type diffEnv struct {
	p   *harness.Primary
	a   *harness.Agent
	cfg harness.AgentConfig
	z   harness.Zone
}

func startDiffPrimary(t *testing.T, z harness.Zone) *harness.Primary {
	t.Helper()
	harness.Require(t, "named", "rndc")
	return harness.StartPrimaryWith(t, harness.PrimaryOptions{
		Zones:        map[string]string{zone: z.Text()},
		ExtraOptions: "provide-ixfr no;",
	})
}

// start starts the agent on cfg (the primary as its master, JSON logs) and creates the zone.
func (e *diffEnv) start(t *testing.T, cfg harness.AgentConfig) {
	t.Helper()
	if cfg.Masters == "" {
		cfg.Masters = e.p.Addr()
	}
	cfg.AllowNotify = "127.0.0.1"
	if cfg.Service == nil {
		cfg.Service = map[string]string{}
	}
	cfg.Service["log_format"] = "json"
	e.a = harness.StartAgent(t, cfg)
	e.cfg = e.a.Config
	create(t, e.a, 0x1301)
	if t.Failed() {
		t.FailNow()
	}
}

// change makes the primary serve the next version (drop records removed, add added),
// sends a NOTIFY and waits for the transfer log line of the new serial.
func (e *diffEnv) change(t *testing.T, drop, add int) xfrLogLine {
	t.Helper()
	e.z = e.z.Next(drop, add)
	e.p.SetZone(t, zone, e.z.Text())
	notify(t, e.a, 0x1302)
	l, ok := xfrTransferTo(e.a, zone, e.z.Serial)
	if !ok {
		t.Fatalf("no transfer to serial %d:\n%s", e.z.Serial, e.a.Output())
	}
	return l
}

// diffLine is the transfer log line's apply fields.
type diffLine struct {
	Apply   string `json:"apply"`
	Reason  string `json:"apply_reason"`
	Deleted int    `json:"deleted"`
	Added   int    `json:"added"`
	Type    string `json:"type"`
}

// lastApply reads the apply fields of the last transfer line to serial and of /zones/NAME.
func lastApply(t *testing.T, a *harness.Agent, serial uint32) (logged, status diffLine) {
	t.Helper()
	for _, line := range strings.Split(a.Output(), "\n") {
		var l struct {
			diffLine
			Msg string `json:"msg"`
			To  uint32 `json:"serial_to"`
		}
		if jsonLine(line, &l) && l.Msg == "transfer" && l.To == serial {
			logged = l.diffLine
		}
	}
	// /zones/NAME shows the transfer once the check that made it has ended, a moment
	// after its log line: wait for it.
	var st struct {
		LastTransfer struct {
			diffLine
			To uint32 `json:"serial_to"`
		} `json:"last_transfer"`
	}
	var body string
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		_, body = httpGet(t, a, "/zones/"+zone)
		return jsonLine(body, &st) && st.LastTransfer.To == serial
	}) {
		t.Errorf("/zones/%s does not show the transfer to serial %d: %s", zone, serial, body)
	}
	return logged, st.LastTransfer.diffLine
}

func wantDiff(t *testing.T, a *harness.Agent, serial uint32, deleted, added int) {
	t.Helper()
	logged, status := lastApply(t, a, serial)
	for what, got := range map[string]diffLine{"log line": logged, "/zones": status} {
		if got.Apply != "diff" || got.Deleted != deleted || got.Added != added || got.Type != "IXFR-full" {
			t.Errorf("%s: %+v; want an IXFR-full applied as a diff deleting %d and adding %d", what, got, deleted, added)
		}
	}
}

func wantReplace(t *testing.T, a *harness.Agent, serial uint32, reason string) {
	t.Helper()
	logged, status := lastApply(t, a, serial)
	for what, got := range map[string]diffLine{"log line": logged, "/zones": status} {
		if got.Apply != "replace" || !strings.Contains(got.Reason, reason) {
			t.Errorf("%s: %+v; want a replace because %q", what, got, reason)
		}
	}
}

// TestDiff1File: a 10-record change in a 20,000-record zone sent as the whole zone is a
// diff, and the file holds exactly the primary's zone.
func TestDiff1File(t *testing.T) {
	t.Parallel()
	e := &diffEnv{z: harness.NewZone(zone, 1, diffRecords)}
	e.p = startDiffPrimary(t, e.z)
	e.start(t, harness.AgentConfig{})
	e.change(t, 5, 5)
	wantDiff(t, e.a, e.z.Serial, 5, 5)
	if _, d := waitFile(e.a, primarySet(t, e.p), 5*time.Second); d != "" {
		t.Fatalf("zone file differs from the primary: %s", d)
	}
}

// TestDiff1CutFullZone: the primary's whole-zone answer to the IXFR (20,000 records,
// dozens of messages) is cut mid-stream, as a primary dying would: nothing of it is
// applied, the agent falls back to AXFR at once, and that AXFR is still applied as a diff
// against the index the cut transfer left intact.
func TestDiff1CutFullZone(t *testing.T) {
	t.Parallel()
	e := &diffEnv{z: harness.NewZone(zone, 1, diffRecords)}
	e.p = startDiffPrimary(t, e.z)
	px := harness.StartDNSProxy(t, e.p.Addr())
	e.start(t, harness.AgentConfig{Masters: px.Addr()})
	px.SetIXFR(harness.DNSFault{CutAfter: 300_000})
	l := e.change(t, 5, 5)
	if px.Cuts() != 1 || l.Type != "AXFR" || l.Fallback == "" {
		t.Errorf("%d cut transfers; transfer line %+v: want the one cut IXFR, then an AXFR with a fallback reason", px.Cuts(), l)
	}
	logged, status := lastApply(t, e.a, e.z.Serial)
	for what, got := range map[string]diffLine{"log line": logged, "/zones": status} {
		if got.Apply != "diff" || got.Deleted != 5 || got.Added != 5 {
			t.Errorf("%s: %+v; want the AXFR applied as a diff deleting 5 and adding 5", what, got)
		}
	}
	if _, d := waitFile(e.a, primarySet(t, e.p), 5*time.Second); d != "" {
		t.Fatalf("zone file differs from the primary: %s", d)
	}
}

// TestDiff1Bind9Update: the same into named through the bind9 backend in update mode:
// named receives one UPDATE and serves exactly the primary's zone.
func TestDiff1Bind9Update(t *testing.T) {
	t.Parallel()
	e := &diffEnv{z: harness.NewZone(zone, 1, diffRecords)}
	e.p = startDiffPrimary(t, e.z)
	n := harness.StartBackendNamed(t, harness.BackendOptions{})
	cfg := bind9AgentConfig(e.p, n, "update")
	e.start(t, cfg)
	mark := len(n.Output())
	e.change(t, 5, 5)
	wantDiff(t, e.a, e.z.Serial, 5, 5)
	if clients := updateClients(n.Output()[mark:]); len(clients) != 1 {
		t.Errorf("named took UPDATEs from %d clients %v for the change, want one UPDATE", len(clients), clients)
	}
	got, err := n.AXFRSet(zone)
	if err != nil {
		t.Fatal(err)
	}
	if d := harness.DiffSets(primarySet(t, e.p), got, 8); d != "" {
		t.Fatalf("named does not serve the primary's zone: %s", d)
	}
}

// updateClients lists the client (connection and source port) of each UPDATE named
// logged as "updating zone": one UPDATE message comes from one.
func updateClients(log string) map[string]bool {
	clients := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		if _, rest, ok := strings.Cut(line, "client @"); ok && strings.Contains(rest, "updating zone") {
			clients[strings.Fields(rest)[0]+" "+strings.Fields(rest)[1]] = true
		}
	}
	return clients
}

// pdnsRowsWritten is MariaDB's count of row writes, deletes and updates so far.
func pdnsRowsWritten(t *testing.T, db *sql.DB) int {
	t.Helper()
	rows, err := db.QueryContext(stmtCtx(t), `SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_write', 'Handler_delete', 'Handler_update')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	total := 0
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// pdnsMatchesPrimary compares pdns_server's answers with the primary's for the names the
// change touched and the apex, and the record rows with the primary's records.
func pdnsMatchesPrimary(t *testing.T, e *pdnsEnv, p *harness.Primary, db *sql.DB, names []string) {
	t.Helper()
	for _, name := range append(names, zone) {
		for _, typ := range []string{"SOA", "A", "TXT", "AAAA", "MX", "CNAME"} {
			if d := pdnsCompare(t, p.Addr(), e.p.Addr(), name, typ); d != "" {
				t.Errorf("%s", d)
			}
		}
	}
	var rows int
	db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM records r JOIN domains d ON d.id = r.domain_id WHERE d.name = ? AND r.type IS NOT NULL`,
		strings.TrimSuffix(zone, ".")).Scan(&rows)
	if want := len(p.AXFR(t, zone)) - 1; rows != want { // the closing SOA
		t.Errorf("%d record rows, want the primary's %d records", rows, want)
	}
}

// changedNames lists the owners of generated records from index first to last.
func changedNames(t *testing.T, p *harness.Primary, before, after harness.Zone) []string {
	t.Helper()
	var names []string
	for _, z := range []harness.Zone{before, after} {
		rrs, err := harness.ParseZoneText(z.Text(), zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range rrs {
			names = append(names, rr.Header().Name)
		}
	}
	// Only the names in one version and not the other changed.
	count := map[string]int{}
	for _, n := range names {
		count[strings.ToLower(n)]++
	}
	var changed []string
	for n, c := range count {
		if c%2 == 1 {
			changed = append(changed, n)
		}
	}
	return changed
}

// TestDiff1PowerDNS: the change writes at most 50 rows in MariaDB and pdns_server serves
// exactly the primary's zone.
func TestDiff1PowerDNS(t *testing.T) {
	t.Parallel()
	pe := startPDNSEnv(t, harness.PDNSOptions{})
	e := &diffEnv{z: harness.NewZone(zone, 1, diffRecords)}
	e.p = startDiffPrimary(t, e.z)
	e.start(t, pdnsAgentConfig(pe))
	db := pe.m.DB(t, pe.dbname)
	before, old := pdnsRowsWritten(t, db), e.z
	e.change(t, 5, 5)
	written := pdnsRowsWritten(t, db) - before
	wantDiff(t, e.a, e.z.Serial, 5, 5)
	if written > 50 {
		t.Errorf("the 10-record change wrote %d rows in MariaDB, want at most 50", written)
	}
	t.Logf("rows written for a 10-record change delivered as a %d-record zone: %d", diffRecords, written)
	if _, ok := pdnsServed(pe, zone, e.z.Serial, 5*time.Second); !ok {
		t.Fatalf("pdns_server does not serve serial %d", e.z.Serial)
	}
	pdnsMatchesPrimary(t, pe, e.p, db, changedNames(t, e.p, old, e.z))
}

func pdnsAgentConfig(e *pdnsEnv) harness.AgentConfig {
	return harness.AgentConfig{
		BackendDriver:    "powerdns",
		QueryDestination: e.p.Addr(),
		Backend: map[string]string{"zone_file_path": "-", "dsn": e.m.DSN(e.dbname),
			"pdns_control": harness.LookPath("pdns_control"), "pdns_socket_dir": e.p.SocketDir()},
	}
}

// TestDiff2FileChangedBehindOurBack: a line removed from the zone file makes the next full
// zone a replace that says why, and the file matches the primary again.
func TestDiff2FileChangedBehindOurBack(t *testing.T) {
	t.Parallel()
	e := &diffEnv{z: harness.NewZone(zone, 1, 2000)}
	e.p = startDiffPrimary(t, e.z)
	e.start(t, harness.AgentConfig{})
	path := e.a.ZoneFile(zone)
	removeLine(t, path, "r100.")
	e.change(t, 2, 2)
	wantReplace(t, e.a, e.z.Serial, "changed behind the agent's back")
	if _, d := waitFile(e.a, primarySet(t, e.p), 5*time.Second); d != "" {
		t.Fatalf("zone file differs from the primary: %s", d)
	}
	// The index is rebuilt: the next change is a diff again.
	e.change(t, 2, 2)
	wantDiff(t, e.a, e.z.Serial, 2, 2)
}

// TestDiff2PowerDNSRowDeleted: a row deleted in MariaDB behind the agent's back is noticed
// (row count), the full zone replaces the rows, and pdns_server serves the primary's zone.
func TestDiff2PowerDNSRowDeleted(t *testing.T) {
	t.Parallel()
	pe := startPDNSEnv(t, harness.PDNSOptions{})
	e := &diffEnv{z: harness.NewZone(zone, 1, 2000)}
	e.p = startDiffPrimary(t, e.z)
	e.start(t, pdnsAgentConfig(pe))
	db := pe.m.DB(t, pe.dbname)
	var victim string
	db.QueryRowContext(stmtCtx(t), `SELECT name FROM records WHERE name LIKE 'r1%' AND type = 'A' LIMIT 1`).Scan(&victim)
	if _, err := db.ExecContext(stmtCtx(t), `DELETE FROM records WHERE name = ? AND type = 'A'`, victim); err != nil || victim == "" {
		t.Fatalf("deleting %q: %v", victim, err)
	}
	old := e.z
	e.change(t, 2, 2)
	wantReplace(t, e.a, e.z.Serial, "changed behind the agent's back")
	if _, ok := pdnsServed(pe, zone, e.z.Serial, 5*time.Second); !ok {
		t.Fatalf("pdns_server does not serve serial %d", e.z.Serial)
	}
	pdnsMatchesPrimary(t, pe, e.p, db, append(changedNames(t, e.p, old, e.z), victim+"."))
}

// TestDiff3KilledMidApply: the agent SIGKILLed at points across a diff apply and started
// again holds the old or the new complete version each time, and converges without a
// NOTIFY.
func TestDiff3KilledMidApply(t *testing.T) {
	t.Parallel()
	pe := startPDNSEnv(t, harness.PDNSOptions{})
	e := &diffEnv{z: harness.NewZone(zone, 1, diffRecords)}
	e.p = startDiffPrimary(t, e.z)
	cfg := pdnsAgentConfig(pe)
	cfg.Service = map[string]string{"startup_check_spread": "0.1", "retry_min": "0.2"}
	e.start(t, cfg)
	db := pe.m.DB(t, pe.dbname)
	complete := func() (uint32, int) {
		var serial uint32
		var rows int
		var content string
		ctx, cancel := context.WithTimeout(t.Context(), stmtTimeout)
		defer cancel()
		db.QueryRowContext(ctx, `SELECT content FROM records WHERE type = 'SOA' AND name = ?`, strings.TrimSuffix(zone, ".")).Scan(&content)
		fmt.Sscanf(strings.Fields(content + " x x 0")[2], "%d", &serial)
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE type IS NOT NULL`).Scan(&rows)
		return serial, rows
	}
	wantRows := len(e.p.AXFR(t, zone)) - 1 // every version has as many records
	// Points from before the check to after the apply: the log line of each round says
	// which version the kill left.
	for i, delay := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond,
		400 * time.Millisecond, 500 * time.Millisecond, 600 * time.Millisecond, 1200 * time.Millisecond} {
		prev := e.z
		e.z = e.z.Next(5, 5)
		e.p.SetZone(t, zone, e.z.Text())
		notify(t, e.a, uint16(0x1310+i))
		time.Sleep(delay)
		if err := e.a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !harness.Eventually(5*time.Second, 5*time.Millisecond, e.a.Exited) {
			t.Fatalf("the agent is still running 5 s after SIGKILL")
		}
		serial, rows := complete()
		t.Logf("killed %v after the NOTIFY: the database held serial %d (old %d, new %d)", delay, serial, prev.Serial, e.z.Serial)
		if want := wantRows; serial != prev.Serial && serial != e.z.Serial || rows != want {
			t.Fatalf("killed %v after the NOTIFY: serial %d with %d record rows; want %d or %d with %d",
				delay, serial, rows, prev.Serial, e.z.Serial, want)
		}
		e.a = harness.StartAgent(t, e.cfg)
		if _, ok := pdnsServed(pe, zone, e.z.Serial, 10*time.Second); !ok {
			t.Fatalf("killed %v after the NOTIFY: not converged to serial %d without a NOTIFY:\n%s", delay, e.z.Serial, e.a.Output())
		}
	}
	pdnsMatchesPrimary(t, pe, e.p, db, nil)
}

func removeLine(t *testing.T, path, prefix string) {
	t.Helper()
	text := readFile(t, path)
	var kept []string
	removed := false
	for _, line := range strings.Split(text, "\n") {
		if !removed && strings.HasPrefix(line, prefix) {
			removed = true
			continue
		}
		kept = append(kept, line)
	}
	if !removed {
		t.Fatalf("no line starting %q in %s", prefix, path)
	}
	writeFile(t, path, strings.Join(kept, "\n"))
}

func jsonLine(line string, v any) bool { return json.Unmarshal([]byte(line), v) == nil }

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

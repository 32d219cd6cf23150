package bench

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Many zones (issue 15, table (a)): N small zones created by CREATE with 32 in flight,
// per backend, against each server's own way of taking that many zones, in one run.

// manyInFlight is how many CREATEs (or rndc runs) are outstanding at once: Designate's
// worker sends them from a thread pool.
const manyInFlight = 32

// manyRow is one line of the table.
type manyRow struct {
	Who     string
	Zones   int
	Took    time.Duration // first request until the last zone is served
	P99     time.Duration // per request (CREATE reply, rndc exit); 0: not per zone
	RSS     int64         // the agent's peak RSS; 0: not an agent
	Failed  int           // requests answered other than NOERROR (or rndc failing)
	Served  int           // zones the server answers the SOA of afterwards
	CPU     string        // CPU seconds by process, where the time went
	Comment string
}

func (r manyRow) rate() float64 { return float64(r.Zones) / r.Took.Seconds() }

// manyZoneName is the i-th small zone.
func manyZoneName(i int) string { return fmt.Sprintf("m%06d.many.", i) }

// manyZoneText is a small zone with relative names: SOA, NS, the name server's address
// and two more records. The same text serves every zone.
const manyZoneText = `$TTL 300
@ IN SOA ns1 hostmaster 7 3600 600 86400 300
@ IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.2
www IN AAAA 2001:db8::2
`

const manySerial = 7

// manyZones runs table (a) for each count in counts, on servers of its own.
func manyZones(t *testing.T, counts []int, agentBins []string, parts map[string]bool) []manyRow {
	harness.Require(t, "named", "rndc", "pdns_server", "pdns_control", "mariadbd", "mariadb-install-db")
	var rows []manyRow
	for _, n := range counts {
		t.Run(fmt.Sprintf("many-%d", n), func(t *testing.T) { rows = append(rows, runManyZones(t, n, agentBins, parts)...) })
	}
	return rows
}

// runManyZones measures one count: a primary with n zones, then each agent backend and
// each peer on fresh servers.
func runManyZones(t *testing.T, n int, agentBins []string, parts map[string]bool) []manyRow {
	agentBin := agentBins[0]
	has := func(p string) bool { return len(parts) == 0 || parts[p] }
	zones := make([]string, n)
	for i := range zones {
		zones[i] = manyZoneName(i)
	}
	p := startManyPrimary(t, zones)
	var rows []manyRow
	add := func(r manyRow) {
		t.Logf("many %d: %-40s %7.0f zones/s, p99 %s, %d failed, %d served, RSS %s; CPU %s %s", n, r.Who, r.rate(), fmtDur(r.P99), r.Failed, r.Served, fmtMiB(r.RSS), r.CPU, r.Comment)
		rows = append(rows, r)
	}
	base := harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", CreateTimeout: "60"}

	// The file backend, after its floor on this machine's filesystem; with -also-agents,
	// the other builds' rows right after, against the same primary (rates on a shared
	// machine compare only within one run).
	if has("file") {
		add(filesAlone(t, zones))
	}
	for i, bin := range agentBins {
		if !has("file") || bin == "" {
			continue
		}
		cfg := base
		cfg.ZoneFilePath = t.TempDir()
		a := startAgent(t, fmt.Sprint("file-many", i), bin, cfg)
		r := createMany(t, a, zones, nil)
		r.Who = "agent, file"
		if i > 0 {
			r.Who += " (" + bin + ")"
		}
		r.Served = countServed(zones, func(z string) bool {
			s, ok := fileProbe(filepath.Join(cfg.ZoneFilePath, harness.ZoneFileName(z)), z)()
			return ok && s == manySerial
		})
		add(r)
		a.stop()
	}
	// The bind9 backend, and named's own ways on a named of their own each.
	if has("bind9") {
		nb := harness.StartBackendNamed(t, harness.BackendOptions{})
		a := startAgent(t, "bind9-many", agentBin, bind9Config(base, nb, "reload"))
		r := createMany(t, a, zones, map[string]int{"named": namedPID(t, nb)})
		r.Who = "agent, bind9 (reload)"
		r.Served = countServed(zones, dnsServes(nb.Addr()))
		add(r)
		a.stop()
		nb.Stop()
	}
	if has("named") {
		nr := harness.StartBackendNamed(t, harness.BackendOptions{})
		r := rndcAddzones(t, nr, zones, func(z string) string {
			path := filepath.Join(nr.ZoneDir(), harness.ZoneFileName(z))
			if err := os.WriteFile(path, []byte(manyZoneText), 0o644); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf(`{ type primary; file "%s"; };`, path)
		})
		r.Who = "named: rndc addzone type primary (file in place)"
		add(r)
		nr.Stop()

		ns := harness.StartBackendNamed(t, harness.BackendOptions{})
		r = rndcAddzones(t, ns, zones, func(z string) string {
			return fmt.Sprintf(`{ type secondary; primaries { 127.0.0.1 port %d; }; file "%s"; };`,
				p.Port(), filepath.Join(ns.ZoneDir(), harness.ZoneFileName(z)))
		})
		r.Who = "named: rndc addzone type secondary"
		add(r)
		ns.Stop()

		add(catalogMembers(t, p, zones))
	}
	// The powerdns backend and PowerDNS's own way, each on its own database and
	// pdns_server with the zone cache on (PowerDNS's default): a new zone is served
	// after a rediscover.
	var m *harness.MariaDB
	if has("powerdns") || has("pdns") {
		m = harness.StartMariaDB(t)
	}
	if has("powerdns") {
		db := m.NewPDNSDatabase(t)
		ps := harness.StartPDNS(t, m, db, harness.PDNSOptions{ZoneCache: true})
		cfg := powerdnsConfig(base, m, db, ps)
		a := startAgent(t, "powerdns-many", agentBin, cfg)
		r := createMany(t, a, zones, map[string]int{"pdns_server": ps.PID(), "mariadbd": m.PID()})
		r.Who = "agent, powerdns"
		r.Served = countServed(zones, dnsServes(ps.Addr()))
		r.Comment = fmt.Sprintf("%s; a rediscover with the %d zones held: %s", strings.TrimSpace(r.Comment), n,
			fmtDur(controlTime(t, ps, "rediscover")))
		add(r)
		a.stop()
	}
	if has("pdns") {
		db2 := m.NewPDNSDatabase(t)
		ps2 := harness.StartPDNS(t, m, db2, harness.PDNSOptions{ZoneCache: true})
		add(pdnsRows(t, openDB(t, m, db2), ps2, zones))
	}
	return rows
}

// startManyPrimary starts named serving every zone (the same small text) and waits until
// it serves the last one.
func startManyPrimary(t *testing.T, zones []string) *harness.Primary {
	start := time.Now()
	m := make(map[string]string, len(zones)+1)
	for _, z := range zones {
		m[z] = manyZoneText
	}
	m[manyCatalog] = catalogText(zones)
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: m})
	if _, err := waitFor(start, 10*time.Minute, servesSerial(dnsProbe(p.Addr(), zones[len(zones)-1]), manySerial)); err != nil {
		t.Fatalf("primary does not serve the zones: %v", err)
	}
	t.Logf("many %d: primary serves them after %v", len(zones), time.Since(start).Round(time.Millisecond))
	return p
}

// createMany sends a CREATE for every zone, manyInFlight at a time, and waits for each
// reply. watch names other processes whose CPU time is reported beside the agent's.
func createMany(t *testing.T, a *agent, zones []string, watch map[string]int) manyRow {
	cpu0 := cpuTimes(a.pid(), watch)
	lat, failed, took := inParallel(zones, func(z string) bool {
		return a.create(z, 2*time.Minute) == dns.RcodeSuccess
	})
	cpu1 := cpuTimes(a.pid(), watch)
	a.checkAlive()
	r := manyRow{Zones: len(zones), Took: took, P99: p99(lat), RSS: vmHWM(a.pid()), Failed: failed, CPU: cpuDelta(cpu0, cpu1)}
	if failed > 0 {
		r.Comment = "(see the agent's log)"
		t.Logf("agent log tail:\n%s", tail(a.out.String(), 4000))
	}
	// Where the agent's time went, from its own account of a sample of the transfers.
	var tr, ap time.Duration
	k := 0
	for i := 0; i < len(zones); i += max(1, len(zones)/50) {
		if lt, err := a.lastTransfer(zones[i]); err == nil {
			tr += time.Duration(lt.Transfer)
			ap += time.Duration(lt.Apply)
			k++
		}
	}
	if k > 0 {
		r.Comment = fmt.Sprintf("mean per zone: transfer %s, apply %s %s", fmtDur(tr/time.Duration(k)), fmtDur(ap/time.Duration(k)), r.Comment)
	}
	return r
}

// inParallel runs do for every zone, manyInFlight at once; it returns each call's
// duration, how many failed and the wall time.
func inParallel(zones []string, do func(string) bool) (lat []time.Duration, failed int, took time.Duration) {
	lat = make([]time.Duration, len(zones))
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < manyInFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(zones) {
					return
				}
				t0 := time.Now()
				if !do(zones[i]) {
					bad.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return lat, int(bad.Load()), time.Since(start)
}

// rndcAddzones runs `rndc addzone NAME CONF` for every zone, manyInFlight rndc processes
// at once, and waits until named serves the last zone.
func rndcAddzones(t *testing.T, n *harness.BackendNamed, zones []string, conf func(string) string) manyRow {
	confs := make(map[string]string, len(zones))
	for _, z := range zones {
		confs[z] = conf(z)
	}
	pid := namedPID(t, n)
	cpu0 := cpuTimes(os.Getpid(), map[string]int{"named": pid})
	start := time.Now()
	var firstErr atomic.Value
	lat, failed, _ := inParallel(zones, func(z string) bool {
		out, err := n.Rndc("addzone", strings.TrimSuffix(z, "."), confs[z])
		if err != nil {
			firstErr.CompareAndSwap(nil, fmt.Sprintf("%v: %s", err, out))
		}
		return err == nil
	})
	served := countServedWithin(zones, dnsServes(n.Addr()), 10*time.Minute)
	took := time.Since(start)
	cpu1 := cpuTimes(os.Getpid(), map[string]int{"named": pid})
	r := manyRow{Zones: len(zones), Took: took, P99: p99(lat), Failed: failed, Served: served,
		CPU: cpuDelta(cpu0, cpu1)}
	if e := firstErr.Load(); e != nil {
		r.Comment = "first failure: " + e.(string)
	}
	return r
}

// manyCatalog is the catalog zone (RFC 9432) listing every small zone, served by the
// primary.
const manyCatalog = "catalog.many."

func catalogText(zones []string) string {
	var b strings.Builder
	b.WriteString("$TTL 0\n@ IN SOA invalid. invalid. 1 3600 600 86400 0\n@ IN NS invalid.\nversion IN TXT \"2\"\n")
	for i, z := range zones {
		fmt.Fprintf(&b, "m%d.zones IN PTR %s\n", i, z)
	}
	return b.String()
}

// catalogMembers is BIND's way of taking many zones at once: a named consuming the
// primary's catalog zone. Timed from `rndc reconfig` (which adds the catalog) until the
// last member is served. transfers-in and serial-query-rate are raised from 10 and 20,
// which would otherwise pace it.
func catalogMembers(t *testing.T, p *harness.Primary, zones []string) manyRow {
	n := harness.StartBackendNamed(t, harness.BackendOptions{})
	conf := filepath.Join(n.Dir(), "named.conf")
	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	cat := strings.TrimSuffix(manyCatalog, ".")
	opts := fmt.Sprintf("allow-new-zones yes;\n\ttransfers-in %d;\n\tserial-query-rate 1000;\n\tcatalog-zones { zone %q default-primaries { 127.0.0.1 port %d; } zone-directory %q; };\n",
		manyInFlight, cat, p.Port(), n.ZoneDir())
	s := strings.Replace(string(text), "allow-new-zones yes;\n", opts, 1)
	s += fmt.Sprintf("zone %q { type secondary; primaries { 127.0.0.1 port %d; }; file %q; };\n", cat, p.Port(), filepath.Join(n.Dir(), "catalog.db"))
	if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := namedPID(t, n)
	cpu0 := cpuTimes(os.Getpid(), map[string]int{"named": pid})
	start := time.Now()
	if out, err := n.Rndc("reconfig"); err != nil {
		t.Fatalf("rndc reconfig: %v: %s", err, out)
	}
	served := countServedWithin(zones, dnsServes(n.Addr()), 10*time.Minute)
	took := time.Since(start)
	cpu1 := cpuTimes(os.Getpid(), map[string]int{"named": pid})
	n.Stop()
	return manyRow{Who: "named: catalog zone with every zone as a member", Zones: len(zones), Took: took, Served: served,
		CPU: cpuDelta(cpu0, cpu1)}
}

// filesAlone is the file backend's floor on this machine: for each zone what the backend
// writes, without the DNS around it (the zone file: a temp file, its fsync, the rename; a
// small zone has no diff index there), manyInFlight zones at once, in a fresh directory on
// the filesystem the agent's are on. The directory fsyncs, which the agent shares between
// zones, are left out. CPU is the bench process's, nearly all of it the kernel's work for
// these files.
func filesAlone(t *testing.T, zones []string) manyRow {
	zoneDir := t.TempDir()
	cpu0, _ := procCPU(os.Getpid())
	lat, failed, took := inParallel(zones, func(z string) bool {
		return writeRenamed(zoneDir, harness.ZoneFileName(z)) == nil
	})
	cpu1, _ := procCPU(os.Getpid())
	return manyRow{Who: "files alone: each zone's file (fsync), no DNS", Zones: len(zones), Took: took,
		P99: p99(lat), Failed: failed, Served: len(zones) - failed, CPU: fmt.Sprintf("bench %.1fs", (cpu1 - cpu0).Seconds())}
}

// writeRenamed writes manyZoneText to a new temp file in dir, syncs it and renames it to
// name.
func writeRenamed(dir, name string) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(manyZoneText)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	return err
}

// controlTime is the median of three `pdns_control COMMAND` runs on ps, the process's
// start included. For "rediscover": what every CREATE through the powerdns backend waits
// for (a rediscover begun after its commit), with the zones ps holds now; for "rping":
// the part of that which is pdns_control's own (the agent writes to the socket itself).
func controlTime(t *testing.T, ps *harness.PDNS, command string) time.Duration {
	var d []time.Duration
	for range 3 {
		start := time.Now()
		if err := pdnsControl(ps.SocketDir(), command); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return d[1]
}

// pdnsRows is PowerDNS's way: domain rows and their records inserted in bulk (1,000
// zones a statement), then one rediscover; timed until the last zone is served.
func pdnsRows(t *testing.T, db *sql.DB, ps *harness.PDNS, zones []string) manyRow {
	cpu0 := cpuTimes(os.Getpid(), map[string]int{"pdns_server": ps.PID()})
	start := time.Now()
	for i := 0; i < len(zones); i += 1000 {
		chunk := zones[i:min(i+1000, len(zones))]
		var q strings.Builder
		args := make([]any, 0, len(chunk))
		q.WriteString("INSERT INTO domains (name, type, account) VALUES ")
		for j, z := range chunk {
			if j > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?, 'NATIVE', 'peer')")
			args = append(args, strings.TrimSuffix(z, "."))
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			t.Fatalf("insert domains: %v", err)
		}
		q.Reset()
		args = args[:0]
		q.WriteString("INSERT INTO records (domain_id, name, type, content, ttl, prio, auth) VALUES ")
		for j, z := range chunk {
			name := strings.TrimSuffix(z, ".")
			for k, rr := range manyRecords(name) {
				if j > 0 || k > 0 {
					q.WriteString(",")
				}
				q.WriteString("((SELECT id FROM domains WHERE name = ?), ?, ?, ?, 300, 0, 1)")
				args = append(args, name, rr.owner, rr.typ, rr.content)
			}
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			t.Fatalf("insert records: %v", err)
		}
	}
	if err := pdnsControl(ps.SocketDir(), "rediscover"); err != nil {
		t.Fatal(err)
	}
	served := countServedWithin(zones, dnsServes(ps.Addr()), 10*time.Minute)
	took := time.Since(start)
	cpu1 := cpuTimes(os.Getpid(), map[string]int{"pdns_server": ps.PID()})
	return manyRow{Who: "PowerDNS: domain rows + one rediscover", Zones: len(zones), Took: took, Served: served, CPU: cpuDelta(cpu0, cpu1)}
}

// manyRecord is one record of manyZoneText.
type manyRecord struct{ owner, typ, content string }

// manyRecords are manyZoneText's records for the zone name, every name in them ending as
// name does: without the dot as PowerDNS's tables keep names, with it for its API.
func manyRecords(name string) []manyRecord {
	return []manyRecord{
		{name, "SOA", fmt.Sprintf("ns1.%s hostmaster.%s %d 3600 600 86400 300", name, name, manySerial)},
		{name, "NS", "ns1." + name},
		{"ns1." + name, "A", "192.0.2.1"},
		{"www." + name, "A", "192.0.2.2"},
		{"www." + name, "AAAA", "2001:db8::2"},
	}
}

// pdnsAPI is PowerDNS's other way: one HTTP API request a zone (POST .../zones with every
// record, PowerDNS's own transaction; PowerDNS then adds the zone to its zone cache, so no
// rediscover), manyInFlight requests at once, each timed until its answer (201).
func pdnsAPI(t *testing.T, m *harness.MariaDB, ps *harness.PDNS, zones []string) manyRow {
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: manyInFlight}}
	var once sync.Once
	watch := map[string]int{"pdns_server": ps.PID(), "mariadbd": m.PID()}
	cpu0 := cpuTimes(os.Getpid(), watch)
	lat, failed, took := inParallel(zones, func(z string) bool {
		err := apiCreate(client, ps, z)
		if err != nil {
			once.Do(func() { t.Logf("PowerDNS API: %s: %v", z, err) })
		}
		return err == nil
	})
	cpu1 := cpuTimes(os.Getpid(), watch)
	return manyRow{Who: "PowerDNS: HTTP API, a request a zone", Zones: len(zones), Took: took, P99: p99(lat),
		Failed: failed, Served: countServed(zones, dnsServes(ps.Addr())), CPU: cpuDelta(cpu0, cpu1)}
}

// apiCreate creates zone z with manyZoneText's records through PowerDNS's API. An empty
// soa_edit_api keeps the serial as given (the default, DEFAULT, would raise it).
func apiCreate(client *http.Client, ps *harness.PDNS, z string) error {
	type record struct {
		Content  string `json:"content"`
		Disabled bool   `json:"disabled"`
	}
	type rrset struct {
		Name       string   `json:"name"`
		Type       string   `json:"type"`
		TTL        int      `json:"ttl"`
		ChangeType string   `json:"changetype"`
		Records    []record `json:"records"`
	}
	var sets []rrset
	for _, rr := range manyRecords(z) {
		i := slices.IndexFunc(sets, func(s rrset) bool { return s.Name == rr.owner && s.Type == rr.typ })
		if i < 0 {
			sets = append(sets, rrset{Name: rr.owner, Type: rr.typ, TTL: 300, ChangeType: "REPLACE"})
			i = len(sets) - 1
		}
		sets[i].Records = append(sets[i].Records, record{Content: rr.content})
	}
	body, err := json.Marshal(map[string]any{"name": z, "kind": "Native", "account": "peer",
		"nameservers": []string{}, "soa_edit_api": "", "rrsets": sets})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, ps.APIURL()+"/zones", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", ps.APIKey())
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s: %s", resp.Status, answer)
	}
	return nil
}

// dnsServes reports whether the server at addr answers a zone's SOA with its serial.
func dnsServes(addr string) func(string) bool {
	return func(z string) bool {
		s, ok := dnsProbe(addr, z)()
		return ok && s == manySerial
	}
}

// countServed checks every zone once, manyInFlight at a time.
func countServed(zones []string, serves func(string) bool) int {
	_, bad, _ := inParallel(zones, serves)
	return len(zones) - bad
}

// countServedWithin waits (up to timeout) until every zone is served and returns how many
// are. It checks every zone not served yet, and then, while some are missing, asks for
// one of them every 20 ms (the last in zones' order, the order they were added in) until
// that one is served, and checks the rest again: checking every missing zone each time
// was thousands of queries every 20 ms, which took CPU from the server being measured.
func countServedWithin(zones []string, serves func(string) bool, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	left := zones
	for len(left) > 0 && time.Now().Before(deadline) {
		ok := make([]bool, len(left))
		var mu sync.Mutex
		inParallel(left, func(z string) bool {
			s := serves(z)
			mu.Lock()
			defer mu.Unlock()
			i, _ := slices.BinarySearch(left, z)
			ok[i] = s
			return s
		})
		var next []string
		for i, z := range left {
			if !ok[i] {
				next = append(next, z)
			}
		}
		left = next
		for len(left) > 0 && !serves(left[len(left)-1]) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return len(zones) - len(left)
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return percentile(s, 99)
}

// cpuTimes reads user+system CPU time of the process pid itself and of its waited-for
// children, and of each watched process. pid is the agent, or for a peer's row the bench
// itself ("bench", its children the rndc processes).
func cpuTimes(pid int, watch map[string]int) map[string]time.Duration {
	m := map[string]time.Duration{}
	who := "agent"
	if pid == os.Getpid() {
		who = "bench"
	}
	self, children := procCPU(pid)
	m[who], m[who+"'s children"] = self, children
	for name, p := range watch {
		m[name], _ = procCPU(p)
	}
	return m
}

func cpuDelta(a, b map[string]time.Duration) string {
	var parts []string
	names := make([]string, 0, len(b))
	for k := range b {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if d := b[k] - a[k]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1fs", k, d.Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

// procCPU returns a process's own CPU time and that of its reaped children
// (/proc/PID/stat fields 14-17, in clock ticks of 1/100 s).
func procCPU(pid int) (self, children time.Duration) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // the command name may hold spaces and parentheses
	if len(f) < 15 {
		return 0, 0
	}
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * 10 * time.Millisecond
	}
	// After the command: field 3 (state) is f[0], so utime (14) is f[11].
	return tick(11) + tick(12), tick(13) + tick(14)
}

// namedPID reads named's pid file.
func namedPID(t *testing.T, n *harness.BackendNamed) int {
	data, err := os.ReadFile(filepath.Join(n.Dir(), "named.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// parseCounts reads -many: zone counts, comma-separated; "" or "0" runs none.
func parseCounts(t *testing.T, s string) []int {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" || f == "0" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			t.Fatalf("-many: %q is not a zone count", f)
		}
		counts = append(counts, n)
	}
	return counts
}

// manyMarkdown renders table (a) and the issue 15 targets measured by it.
func manyMarkdown(rows []manyRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Many zones (issue 15)\n\n")
	fmt.Fprintf(&b, "Small zones (5 records) from one BIND primary, each created by an opcode-14 CREATE with %d in flight "+
		"(the agent's defaults otherwise: workers 8), against each server's own way of taking that many zones, on fresh "+
		"servers each. zones/s counts from the first request until the last zone is served (the agent: its last reply; "+
		"served is then checked zone by zone). p99 is per request: the CREATE reply, or the rndc process. RSS is the agent's peak. "+
		"CPU is per process over the run (\"bench\" is the bench itself sending a peer's requests, its children the rndc processes). "+
		"\"files alone\" is the file backend's floor on this machine's filesystem: each zone's file written to a temp file, "+
		"fsynced and renamed (a small zone has no diff index file there), %d zones at once, without DNS (bench/README.md). The powerdns row "+
		"gives how long a rediscover takes once every zone is held: each CREATE waits for one begun after its commit.\n\n", manyInFlight, manyInFlight)
	b.WriteString("| zones | who | zones/s | p99 reply | peak RSS | failed | served | CPU | notes |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %d | %d | %s | %s |\n", r.Zones, r.Who, r.rate(), fmtDur(r.P99), fmtMiB(r.RSS),
			r.Failed, r.Served, r.CPU, r.Comment)
	}
	b.WriteString("\n| target (issue 15 acceptance 3) | measured | verdict |\n|---|---|---|\n")
	byWho := func(n int, who string) (manyRow, bool) {
		for _, r := range rows {
			if r.Zones == n && strings.HasPrefix(r.Who, who) {
				return r, true
			}
		}
		return manyRow{}, false
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	for _, n := range uniqueCounts(rows) {
		ok := func(r manyRow) bool { return r.Failed == 0 && r.Served == r.Zones }
		if a, found := byWho(n, "agent, bind9"); found {
			if peer, found := byWho(n, "named: rndc addzone type primary"); found {
				ratio := a.rate() / peer.rate()
				fmt.Fprintf(&b, "| bind9 ≥ 0.8 × named's parallel rndc addzone (%d zones) | %.0f vs %.0f zones/s = %.2f× | %s |\n",
					n, a.rate(), peer.rate(), ratio, verdict(ratio >= 0.8 && ok(a)))
			}
		}
		if a, found := byWho(n, "agent, powerdns"); found {
			fmt.Fprintf(&b, "| powerdns ≥ 500 zones/s (%d zones) | %.0f zones/s | %s |\n", n, a.rate(), verdict(a.rate() >= 500 && ok(a)))
		}
		if a, found := byWho(n, "agent, file"); found {
			floor := ""
			if f, found := byWho(n, "files alone"); found {
				floor = fmt.Sprintf(" (%.2f× the files alone: %.0f zones/s)", a.rate()/f.rate(), f.rate())
			}
			fmt.Fprintf(&b, "| file ≥ 2,000 zones/s (%d zones) | %.0f zones/s%s | %s |\n", n, a.rate(), floor, verdict(a.rate() >= 2000 && ok(a)))
		}
	}
	return b.String()
}

func uniqueCounts(rows []manyRow) []int {
	var ns []int
	for _, r := range rows {
		if !slices.Contains(ns, r.Zones) {
			ns = append(ns, r.Zones)
		}
	}
	return ns
}

func parseParts(s string) map[string]bool {
	parts := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			parts[f] = true
		}
	}
	return parts
}

// powerdnsConfig is base with the powerdns backend on database db of m, served by ps.
func powerdnsConfig(base harness.AgentConfig, m *harness.MariaDB, db string, ps *harness.PDNS) harness.AgentConfig {
	cfg := base
	cfg.BackendDriver = "powerdns"
	cfg.QueryDestination = ps.Addr()
	cfg.Backend = map[string]string{"zone_file_path": "-", "dsn": m.DSN(db), "pdns_socket_dir": ps.SocketDir()}
	return cfg
}

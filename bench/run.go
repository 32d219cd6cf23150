package bench

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Options drive one benchmark run.
type Options struct {
	Sizes      []int         // generated records per zone
	Runs       int           // runs per case (medians are reported)
	LongRun    time.Duration // a case whose first run takes longer runs once
	NotifyRate int           // NOTIFYs per second for the acknowledgement latency
	NotifyFor  time.Duration
	QueryFor   time.Duration   // per path, for the passthrough throughput
	Change     int             // records deleted and as many added per change
	Many       []int           // zone counts of the many-zones table (issue 15)
	ManyParts  map[string]bool // its rows: file, bind9, named, powerdns, pdns; all when empty
	ManyAlso   []string        // more agent binaries whose file rows follow (-also-agents)
	Cases      map[string]bool // which parts run (caseNames); all when empty
	// Baseline holds the medians of an earlier report (-baseline), by key and size: the
	// new-zone rows are compared with it (issue 13: "must not get slower").
	Baseline     map[string]map[int]time.Duration
	BaselineFrom string
}

// caseNames are the parts of a run -cases selects from.
var caseNames = []string{"limits", "full", "passthrough", "ixfr", "fullzone", "notify", "many"}

func (o Options) has(c string) bool { return len(o.Cases) == 0 || o.Cases[c] }

// Case keys: limits, peers and agent targets; a target's full and change cases are
// KEY.full and KEY.ixfr.
const (
	limAXFR      = "limit.axfr"
	limAXFRBy    = "limit.axfr.beside" // the raw AXFR read again just before each agent's fullzone run
	limAXFRNew   = "limit.axfr.new"    // the raw AXFR read again just before each new-zone run of newZoneAgainstAXFR
	cpuKey       = "cpu."              // before a key: CPU time (user+system) instead of wall time
	limCheckzone = "limit.checkzone"
	limBulk      = "limit.bulkload"
	peerNamed    = "peer.named"
	peerPDNS     = "peer.pdns"
	peerPDNSNoIX = "peer.pdns.noixfr" // the change case without IXFR metadata: AXFR
	peerNamedIXD = "peer.named-ixd"   // named secondary with ixfr-from-differences (fullzone only)
	agFile       = "agent.file"
	agReload     = "agent.bind9-reload"
	agUpdate     = "agent.bind9-update"
	agPDNS       = "agent.powerdns"
	agPDNSOff    = "agent.powerdns-nodiff.fullzone" // the powerdns agent with diff_index_dir empty
)

// A target's case keys: KEY.full (new zone), KEY.ixfr (change by IXFR), KEY.fullzone (the
// change delivered as a full zone: issue 13).
const fullZone = ".fullzone"

// env is everything that lives across sizes: the backend servers and the peers.
type env struct {
	t           *testing.T
	opt         Options
	agentBin    string
	namedReload *harness.BackendNamed // bind9 backend, update_mode reload
	namedUpdate *harness.BackendNamed // bind9 backend, update_mode update
	namedSec    namedSecondary
	namedSecIXD namedSecondary // with ixfr-from-differences
	agentDB     *harness.MariaDB
	agentDBName string
	agentPDNS   *harness.PDNS
	pdnsSec     *pdnsSecondary
	res         *Results
}

// Run measures every size and returns the results.
func Run(t *testing.T, opt Options, agentBin string) *Results {
	harness.Require(t, "named", "rndc", "named-checkzone", "pdns_server", "pdns_control", "mariadbd", "mariadb-install-db")
	e := &env{t: t, opt: opt, agentBin: agentBin, res: newResults(opt)}
	start := time.Now()
	if opt.has("many") && len(opt.Many) > 0 {
		e.res.Many = manyZones(t, opt.Many, append([]string{agentBin}, opt.ManyAlso...), opt.ManyParts) // on servers of its own
		if len(opt.Cases) == 1 {
			e.res.Elapsed = time.Since(start)
			return e.res
		}
	}
	e.namedReload = harness.StartBackendNamed(t, harness.BackendOptions{})
	e.namedUpdate = harness.StartBackendNamed(t, harness.BackendOptions{})
	e.namedSec = namedSecondary{n: harness.StartBackendNamed(t, harness.BackendOptions{})}
	if opt.has("fullzone") {
		e.namedSecIXD = namedSecondary{n: harness.StartBackendNamed(t, harness.BackendOptions{}), ixd: true}
	}
	e.agentDB = harness.StartMariaDB(t)
	e.agentDBName = e.agentDB.NewPDNSDatabase(t)
	e.agentPDNS = harness.StartPDNS(t, e.agentDB, e.agentDBName, harness.PDNSOptions{})
	e.pdnsSec = startPDNSSecondary(t)
	t.Logf("servers started in %v", time.Since(start).Round(time.Millisecond))
	for i, n := range opt.Sizes {
		last := i == len(opt.Sizes)-1
		t.Run(sizeName(n), func(t *testing.T) { e.runSize(t, n, i == 0, last) })
		if t.Failed() {
			break
		}
	}
	e.res.Elapsed = time.Since(start)
	return e.res
}

// target is a server that can be handed a new zone and told about a change.
type target struct {
	key    string
	probe  serialProbe
	add    func() error // start the full transfer of the new zone
	remove func() error // forget the zone (returns once asked)
	notify func() error // tell it the primary has a new serial
	agent  *agent
	rows   *sql.DB // the MariaDB it writes to: rows written are counted
	// fullZoneOnly: the target takes part in the fullzone case only (it is given the
	// zone unmeasured first).
	fullZoneOnly bool
}

// sizeRun is the state of one size: its primary, zone versions and targets.
type sizeRun struct {
	*env
	t       *testing.T
	n       int
	zone    string
	z       harness.Zone
	p       *harness.Primary
	pfile   string
	mtime   time.Time
	targets []target
	aFile   *agent
	aReload *agent
}

func (e *env) runSize(t *testing.T, n int, first, last bool) {
	s := &sizeRun{env: e, t: t, n: n, zone: zoneName(n)}
	s.z = harness.NewZone(s.zone, 1000, n)
	s.startPrimary()
	s.startTargets()
	if s.opt.has("limits") {
		s.limits()
	}
	if s.opt.has("full") {
		s.fullTransfers()
	}
	if first && s.opt.has("passthrough") {
		s.passthrough()
	}
	if s.opt.has("ixfr") {
		s.changes()
	}
	if s.opt.has("fullzone") {
		s.fullZoneChanges()
	}
	if last {
		if s.opt.has("notify") {
			s.sync(nil)
			s.notifyLatency()
		}
		return // everything is stopped at the end; no need to delete a 1M zone first
	}
	for _, tg := range s.targets {
		if err := tg.remove(); err != nil {
			t.Errorf("%s: removing %s: %v", tg.key, s.zone, err)
		}
	}
}

// notifyZones are small zones the file agent holds, the NOTIFY latency's subjects.
var notifyZones = []string{"n0.bench.", "n1.bench.", "n2.bench.", "n3.bench.", "n4.bench.",
	"n5.bench.", "n6.bench.", "n7.bench.", "n8.bench.", "n9.bench."}

func (s *sizeRun) startPrimary() {
	t := s.t
	start := time.Now()
	zones := map[string]string{s.zone: s.z.Text()}
	for _, z := range notifyZones {
		zones[z] = harness.GenerateZone(z, 1, 10)
	}
	s.p = harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: zones, IXFRFromDifferences: true})
	if _, err := waitFor(start, 5*time.Minute, servesSerial(dnsProbe(s.p.Addr(), s.zone), s.z.Serial)); err != nil {
		t.Fatalf("primary does not serve %s: %v", s.zone, err)
	}
	s.pfile = filepath.Join(s.p.Dir(), "db."+strings.TrimSuffix(s.zone, "."))
	s.mtime = time.Now().Add(time.Second)
	t.Logf("%s: primary serves %s (%d generated records) after %v", sizeName(s.n), s.zone, s.n, time.Since(start).Round(time.Millisecond))
}

// setZone moves the primary to zone version z: rewrite the file, rndc reload, wait until
// it is served (BIND computes the IXFR difference on reload: ixfr-from-differences).
func (s *sizeRun) setZone(z harness.Zone) {
	t := s.t
	start := time.Now()
	tmp := s.pfile + ".tmp"
	if err := os.WriteFile(tmp, []byte(z.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	// named skips a reload when the file's mtime has not moved on.
	if mt := time.Now().Add(2 * time.Second); mt.After(s.mtime) {
		s.mtime = mt
	} else {
		s.mtime = s.mtime.Add(time.Second)
	}
	if err := os.Chtimes(tmp, s.mtime, s.mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.pfile); err != nil {
		t.Fatal(err)
	}
	if out, err := s.p.Rndc("reload", strings.TrimSuffix(s.zone, ".")); err != nil {
		t.Fatalf("rndc reload: %v: %s", err, out)
	}
	if _, err := waitFor(start, 5*time.Minute, servesSerial(dnsProbe(s.p.Addr(), s.zone), z.Serial)); err != nil {
		t.Fatalf("primary does not serve serial %d: %v", z.Serial, err)
	}
	s.z = z
	t.Logf("%s: primary at serial %d after %v", sizeName(s.n), z.Serial, time.Since(start).Round(time.Millisecond))
}

func (s *sizeRun) startTargets() {
	t, zone := s.t, s.zone
	notifyDNS := func(addr string) func() error {
		return func() error {
			r, err := harness.ExchangeUDP(addr, harness.NotifyMsg(nextID(), zone, false), 5*time.Second)
			if err != nil {
				return err
			}
			if rc := r[3] & 0x0f; rc != dns.RcodeSuccess {
				return fmt.Errorf("NOTIFY answered %s", dns.RcodeToString[int(rc)])
			}
			return nil
		}
	}
	untilGone := func(p serialProbe, remove func() error) func() error {
		return func() error {
			start := time.Now()
			if err := remove(); err != nil {
				return err
			}
			_, err := waitFor(start, 5*time.Minute, gone(p))
			return err
		}
	}

	ns := s.namedSec
	nsProbe := dnsProbe(ns.n.Addr(), zone)
	s.targets = append(s.targets, target{key: peerNamed, probe: nsProbe,
		add:    func() error { return ns.add(zone, s.p.Port()) },
		remove: untilGone(nsProbe, func() error { return ns.remove(zone) }),
		notify: notifyDNS(ns.n.Addr())})
	if ix := s.namedSecIXD; ix.n != nil {
		ixProbe := dnsProbe(ix.n.Addr(), zone)
		s.targets = append(s.targets, target{key: peerNamedIXD, probe: ixProbe, fullZoneOnly: true,
			add:    func() error { return ix.add(zone, s.p.Port()) },
			remove: untilGone(ixProbe, func() error { return ix.remove(zone) }),
			notify: notifyDNS(ix.n.Addr())})
	}
	ps := s.pdnsSec
	psProbe := dnsProbe(ps.addr(), zone)
	s.targets = append(s.targets, target{key: peerPDNS, probe: psProbe,
		add:    func() error { return ps.add(zone, s.p.Addr()) },
		remove: thenPurged(t, ps.m, untilGone(psProbe, func() error { return ps.remove(zone) })),
		notify: notifyDNS(ps.addr()), rows: ps.m.DB(t, "")})

	agentTarget := func(key string, a *agent, probe serialProbe) target {
		return target{key: key, probe: probe, agent: a,
			add: func() error {
				go a.create(zone, 10*time.Minute) // the reply comes after create_timeout at the latest
				return nil
			},
			remove: untilGone(probe, func() error {
				// No reply (-1): a 1M-row delete can outlast the retries; untilGone waits
				// for it. A retried DELETE whose first reply was lost finds the zone gone.
				if rc := a.delete(zone); rc != dns.RcodeSuccess && rc != -1 {
					if _, held := probe(); held {
						return fmt.Errorf("DELETE answered rcode %d", rc)
					}
				}
				return nil
			}),
			notify: func() error {
				if rc := a.notify(zone); rc != dns.RcodeSuccess {
					return fmt.Errorf("NOTIFY answered rcode %d", rc)
				}
				return nil
			}}
	}
	base := harness.AgentConfig{Masters: s.p.Addr(), AllowNotify: "127.0.0.1", AllowQuery: queryAllow}
	fileCfg := base
	fileCfg.ZoneFilePath = t.TempDir()
	s.aFile = startAgent(t, "file", s.agentBin, fileCfg)
	s.targets = append(s.targets, agentTarget(agFile, s.aFile, fileProbe(filepath.Join(fileCfg.ZoneFilePath, harness.ZoneFileName(zone)), zone)))

	s.aReload = startAgent(t, "bind9-reload", s.agentBin, bind9Config(base, s.namedReload, "reload"))
	s.targets = append(s.targets, agentTarget(agReload, s.aReload, dnsProbe(s.namedReload.Addr(), zone)))
	aUpdate := startAgent(t, "bind9-update", s.agentBin, bind9Config(base, s.namedUpdate, "update"))
	s.targets = append(s.targets, agentTarget(agUpdate, aUpdate, dnsProbe(s.namedUpdate.Addr(), zone)))

	pcfg := base
	pcfg.BackendDriver = "powerdns"
	pcfg.QueryDestination = s.agentPDNS.Addr()
	pcfg.Backend = map[string]string{"zone_file_path": "-", "dsn": s.agentDB.DSN(s.agentDBName),
		"pdns_socket_dir": s.agentPDNS.SocketDir()}
	aPDNS := startAgent(t, "powerdns", s.agentBin, pcfg)
	pt := agentTarget(agPDNS, aPDNS, dnsProbe(s.agentPDNS.Addr(), zone))
	pt.remove = thenPurged(t, s.agentDB, pt.remove)
	pt.rows = s.agentDB.DB(t, "")
	s.targets = append(s.targets, pt)
}

// thenPurged runs remove, then waits until InnoDB has purged the deleted rows.
func thenPurged(t testing.TB, m *harness.MariaDB, remove func() error) func() error {
	db := m.DB(t, "")
	return func() error {
		if err := remove(); err != nil {
			return err
		}
		waitPurged(t, db)
		return nil
	}
}

// waitPurged waits (3 min at most) until InnoDB has purged deleted rows: a million deleted
// rows are purged in the background for many seconds, and the next run's inserts would
// otherwise pay for the previous run's delete.
func waitPurged(t testing.TB, db *sql.DB) {
	var history int64
	ok := harness.Eventually(3*time.Minute, 200*time.Millisecond, func() bool {
		var typ, name, status string
		if err := db.QueryRow("SHOW ENGINE INNODB STATUS").Scan(&typ, &name, &status); err != nil {
			return false
		}
		for _, line := range strings.Split(status, "\n") {
			if v, found := strings.CutPrefix(line, "History list length "); found {
				fmt.Sscan(v, &history)
				return history < 1000
			}
		}
		return false
	})
	if !ok {
		t.Logf("InnoDB purge still has %d undo logs to go after 3 min; going on", history)
	}
}

// bind9Config points an agent at a backend named. rndc_timeout also bounds how long the
// backend waits for named to load a new zone: 10 s (the default) is too short for 1M.
func bind9Config(base harness.AgentConfig, n *harness.BackendNamed, mode string) harness.AgentConfig {
	c := base
	c.BackendDriver = "bind9"
	c.ZoneFilePath = n.ZoneDir()
	c.QueryDestination = n.Addr()
	c.Backend = map[string]string{"rndc_host": "127.0.0.1", "rndc_port": fmt.Sprint(n.ControlPort()),
		"rndc_key_file": n.RNDCKeyFile(), "rndc_timeout": "300", "update_mode": mode}
	if mode == "update" {
		c.Backend["update_key"] = harness.UpdateKeyName
		c.Sections = fmt.Sprintf("[tsig:%s]\nalgorithm = hmac-sha256\nsecret = %s\n", harness.UpdateKeyName, n.UpdateSecret)
	}
	return c
}

// repeat runs f up to Runs times, once only if the first run took longer than LongRun.
func (s *sizeRun) repeat(what string, f func(run int) time.Duration) {
	for r := 0; r < s.opt.Runs; r++ {
		d := f(r)
		if r == 0 && d > s.opt.LongRun && s.opt.Runs > 1 {
			s.res.note("%s at %s: one run only (the first took %s, over %s)", what, sizeName(s.n), fmtDur(d), fmtDur(s.opt.LongRun))
			return
		}
	}
}

func (s *sizeRun) limits() {
	t := s.t
	for r := 0; r < s.opt.Runs; r++ {
		d, records, err := rawAXFR(s.p.Addr(), s.zone)
		if err != nil {
			t.Fatalf("raw AXFR: %v", err)
		}
		s.res.Records[s.n] = records - 1 // the closing SOA repeats the first
		s.res.add(limAXFR, s.n, d)
		d, err = checkZone(s.zone, s.pfile)
		if err != nil {
			t.Fatal(err)
		}
		s.res.add(limCheckzone, s.n, d)
	}
	rows, err := zoneRows(s.pfile, s.zone)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, s.agentDB, s.agentDBName)
	s.repeat("bulk load", func(int) time.Duration {
		d, err := bulkLoad(t, db, s.zone, rows)
		if err != nil {
			t.Fatalf("bulk load: %v", err)
		}
		s.res.add(limBulk, s.n, d)
		return d
	})
	t.Logf("%s: limits: AXFR %s, named-checkzone %s, bulk load %s", sizeName(s.n),
		fmtDur(s.res.median(limAXFR, s.n)), fmtDur(s.res.median(limCheckzone, s.n)), fmtDur(s.res.median(limBulk, s.n)))
}

// measure triggers one case on a target and waits until it serves serial; for an agent
// it also follows its memory and reads its own account of the transfer.
func (s *sizeRun) measure(tg target, key string, trigger func() error, serial uint32) time.Duration {
	t := s.t
	var w *memWatch
	if tg.agent != nil {
		tg.agent.checkAlive()
		w = watchMemory(tg.agent)
	}
	var rows0 int64
	if tg.rows != nil {
		var err error
		if rows0, err = rowsWritten(tg.rows); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	start := time.Now()
	if err := trigger(); err != nil {
		t.Fatalf("%s at %s: %v", key, sizeName(s.n), err)
	}
	d, err := waitFor(start, 30*time.Minute, servesSerial(tg.probe, serial))
	if w != nil {
		rss, heap := w.stop()
		s.res.addMem(key, s.n, rss, heap)
		if lt, ok := tg.agent.transferTo(s.zone, serial); ok {
			s.res.addSplit(key, s.n, lt)
		}
	}
	if err != nil {
		if tg.agent != nil {
			t.Logf("agent output:\n%s", tg.agent.out)
		}
		t.Fatalf("%s at %s: serial %d: %v", key, sizeName(s.n), serial, err)
	}
	s.res.add(key, s.n, d)
	msg := fmt.Sprintf("%s: %-32s %s", sizeName(s.n), key, fmtDur(d))
	if tg.rows != nil {
		rows1, err := rowsWritten(tg.rows)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		s.res.addRows(key, s.n, rows1-rows0)
		msg += fmt.Sprintf(", %d rows written", rows1-rows0)
	}
	if tg.agent != nil {
		switch lt := s.res.lastSplit(key, s.n); lt.Path {
		case "":
		case "diff":
			msg += fmt.Sprintf(", apply diff -%d +%d", lt.Deleted, lt.Added)
		default:
			msg += ", apply " + lt.Path + " " + lt.PathReason
		}
	}
	t.Log(msg)
	return d
}

// newZoneAgainstAXFR are the agents whose new-zone targets divide by the raw AXFR read
// (Results.Targets; powerdns's divides by the bulk load): the read is taken again just
// before their runs.
var newZoneAgainstAXFR = map[string]bool{agFile: true, agReload: true, agUpdate: true}

// fullTransfers hands every target the new zone, Runs times (round robin over the
// targets, so a slow moment of the machine does not hit one target's every run).
func (s *sizeRun) fullTransfers() {
	once := map[string]bool{}
	for r := 0; r < s.opt.Runs; r++ {
		for _, tg := range s.targets {
			if once[tg.key] || tg.fullZoneOnly {
				continue
			}
			if r > 0 {
				if err := tg.remove(); err != nil {
					s.t.Fatalf("%s: removing %s: %v", tg.key, s.zone, err)
				}
			}
			if newZoneAgainstAXFR[tg.key] {
				// The reference read again just before, as for the change as a full zone:
				// the run before (1M rows into MariaDB) can leave the machine busy for a while.
				d, _, err := rawAXFR(s.p.Addr(), s.zone)
				if err != nil {
					s.t.Fatalf("raw AXFR: %v", err)
				}
				s.res.add(limAXFRNew, s.n, d)
			}
			d := s.measure(tg, tg.key+".full", tg.add, s.z.Serial)
			if r == 0 && d > s.opt.LongRun && s.opt.Runs > 1 {
				once[tg.key] = true
				s.res.note("%s full transfer at %s: one run only (the first took %s, over %s)", tg.key, sizeName(s.n), fmtDur(d), fmtDur(s.opt.LongRun))
			}
		}
	}
}

// changes moves the primary by Change deletions and additions, Runs times, and has
// every target follow by NOTIFY (PowerDNS with IXFR=1 metadata); then PowerDNS alone
// without the metadata (it transfers the whole zone).
func (s *sizeRun) changes() {
	ps := s.pdnsSec
	if err := ps.setIXFR(s.zone, true); err != nil {
		s.t.Fatal(err)
	}
	for r := 0; r < s.opt.Runs; r++ {
		s.setZone(s.z.Next(s.opt.Change, s.opt.Change))
		for _, tg := range s.targets {
			if !tg.fullZoneOnly {
				s.measure(tg, tg.key+".ixfr", tg.notify, s.z.Serial)
			}
		}
	}
	if err := ps.setIXFR(s.zone, false); err != nil {
		s.t.Fatal(err)
	}
	pdns := s.target(peerPDNS)
	s.repeat("PowerDNS change without IXFR metadata", func(int) time.Duration {
		s.setZone(s.z.Next(s.opt.Change, s.opt.Change))
		return s.measure(pdns, peerPDNSNoIX, pdns.notify, s.z.Serial)
	})
}

// passthrough compares query throughput through the agent (bind9 backend, relayed to
// named) and through dnsdist relaying to the same named with querying that named directly.
func (s *sizeRun) passthrough() {
	dd, pid := startDnsdist(s.t, s.res, s.namedReload.Addr())
	paths := passthroughPaths(s.namedReload.Addr(), s.aReload, dd, pid)
	measurePassthrough(s.t, s.res, questions(s.z, 2000), paths, s.opt.Runs, s.opt.QueryFor)
}

// questions are queries for the first k names of zone version z, each for its type.
func questions(z harness.Zone, k int) []dns.Question {
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX, dns.TypeCNAME, dns.TypeTXT, dns.TypeA, dns.TypeTXT}
	var qs []dns.Question
	for i := z.First; i < z.First+min(z.Count, k); i++ {
		qs = append(qs, dns.Question{Name: fmt.Sprintf("r%d.%s", i, z.Origin()), Qtype: types[i%8], Qclass: dns.ClassINET})
	}
	return qs
}

// notifyLatency offers NOTIFYs for small held zones to the file agent, idle and then while
// it transfers the largest zone over and over (DELETE, CREATE, wait until served).
func (s *sizeRun) notifyLatency() {
	t, a := s.t, s.aFile
	for _, z := range notifyZones {
		if rc := a.create(z, 30*time.Second); rc != dns.RcodeSuccess {
			t.Fatalf("CREATE %s: rcode %d", z, rc)
		}
	}
	idle, err := notifyLoad(a.addr(), notifyZones, s.opt.NotifyRate, s.opt.NotifyFor)
	if err != nil {
		t.Fatal(err)
	}
	idle.Condition = "agent idle"
	s.res.Notify = append(s.res.Notify, idle)
	a.checkAlive()

	var fileTarget target
	for _, tg := range s.targets {
		if tg.key == agFile {
			fileTarget = tg
		}
	}
	stop := make(chan struct{})
	loopDone := make(chan int)
	busy := make(chan struct{})
	go func() {
		completed := 0
		defer func() { loopDone <- completed }()
		for i := 0; ; i++ {
			if err := fileTarget.remove(); err != nil {
				t.Errorf("notify latency: DELETE: %v", err)
				return
			}
			fileTarget.add()
			if i == 0 {
				close(busy)
			}
			if _, err := waitFor(time.Now(), 10*time.Minute, servesSerial(fileTarget.probe, s.z.Serial)); err != nil {
				t.Errorf("notify latency: transfer: %v", err)
				return
			}
			select {
			case <-stop:
				return
			default:
				completed++
			}
		}
	}()
	<-busy
	loaded, err := notifyLoad(a.addr(), notifyZones, s.opt.NotifyRate, s.opt.NotifyFor)
	close(stop)
	completed := <-loopDone
	if err != nil {
		t.Fatal(err)
	}
	loaded.Condition = fmt.Sprintf("%s full transfers running back to back", sizeName(s.n))
	loaded.TransfersCompleted = completed
	loaded.DuringTransfer = true
	s.res.Notify = append(s.res.Notify, loaded)
	s.res.NotifySize = s.n
	for _, r := range s.res.Notify {
		t.Logf("NOTIFY %s: %d/%d answered (%d dropped at the agent's socket), p50 %s, p99 %s, max %s", r.Condition, r.Answered, r.Sent, r.Dropped, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.Max))
	}
	a.checkAlive()
}

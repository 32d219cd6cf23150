package bench

import (
	"cmp"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// fullZoneChanges is the case a Designate pool produces (issue 13): the primary answers
// every IXFR with the whole zone, as MiniDNS does, so a 10-record change reaches every
// target as a full zone. Each target follows Runs changes by NOTIFY; then the powerdns
// agent does the same with its diff index off (diff_index_dir empty): today's full
// replace, the reference the diff is measured against.
func (s *sizeRun) fullZoneChanges() {
	t := s.t
	s.sync(nil)
	s.fullZonePrimary()
	// In a Designate pool every change arrives whole, so the agents' indexes describe what
	// they hold; here the IXFRs before made them drop it. One change, unmeasured, gets the
	// agents there (the peers have no such state: PowerDNS transfers all of it anyway).
	s.setZone(s.z.Next(s.opt.Change, s.opt.Change))
	s.checkFullAnswer(s.z.Serial - 1)
	s.sync(func(tg target) bool { return tg.agent != nil })
	// PowerDNS asks for AXFR (no IXFR metadata): the answer is the whole zone either way,
	// and at 1M its IXFR=1 path, handed the whole zone, did not finish on its own (once,
	// under a load average of 15: no transfer for 10 minutes).
	if err := s.pdnsSec.setIXFR(s.zone, false); err != nil {
		t.Fatal(err)
	}
	// PowerDNS's secondary goes last in each round: it takes minutes at 1M.
	order := slices.Clone(s.targets)
	slices.SortStableFunc(order, func(a, b target) int {
		return cmp.Compare(boolInt(a.key == peerPDNS), boolInt(b.key == peerPDNS))
	})
	once := map[string]bool{}
	for r := 0; r < s.opt.Runs; r++ {
		s.setZone(s.z.Next(s.opt.Change, s.opt.Change))
		for _, tg := range order {
			if once[tg.key] {
				continue // it fell behind; the notes say why
			}
			key := tg.key + fullZone
			var cpu0 time.Duration
			if tg.agent != nil {
				// The reference read again just before: on a shared machine the ratio then
				// compares figures taken under the same load. CPU time moves less with the
				// load than wall time: the read's (this process's) and the agent's are kept
				// too, the agent's up to when it serves the change (its index is written after).
				self0, _ := procCPU(os.Getpid())
				d, _, err := rawAXFR(s.p.Addr(), s.zone)
				if err != nil {
					t.Fatalf("raw AXFR: %v", err)
				}
				self1, _ := procCPU(os.Getpid())
				s.res.add(limAXFRBy, s.n, d)
				s.res.add(cpuKey+limAXFRBy, s.n, self1-self0)
				cpu0, _ = procCPU(tg.agent.pid())
			}
			d := s.measure(tg, key, tg.notify, s.z.Serial)
			if tg.agent != nil {
				cpu1, _ := procCPU(tg.agent.pid())
				s.res.add(cpuKey+key, s.n, cpu1-cpu0)
			}
			if r == 0 && d > s.opt.LongRun && s.opt.Runs > 1 {
				once[tg.key] = true
				s.res.note("%s at %s: one run only (the first took %s, over %s)", key, sizeName(s.n), fmtDur(d), fmtDur(s.opt.LongRun))
			}
			if tg.agent != nil {
				if lt := s.res.lastSplit(key, s.n); lt.Path != "diff" {
					s.res.note("%s at %s, run %d: applied as %q (%s), not as a diff", key, sizeName(s.n), r+1, lt.Path, lt.PathReason)
				}
			}
		}
	}

	// The reference: the same change applied by the powerdns agent without its index.
	pt := s.target(agPDNS)
	pt.agent.restart(func(c *harness.AgentConfig) { c.Service["diff_index_dir"] = "" })
	db := s.agentDB.DB(t, "")
	s.repeat("powerdns agent with the diff index off (full replace)", func(int) time.Duration {
		waitPurged(t, db) // the previous replace's million deletes are not this one's to pay
		s.setZone(s.z.Next(s.opt.Change, s.opt.Change))
		d := s.measure(pt, agPDNSOff, pt.notify, s.z.Serial)
		if lt := s.res.lastSplit(agPDNSOff, s.n); lt.Path != "replace" {
			s.res.note("%s at %s: applied as %q (%s), not as a replace", agPDNSOff, sizeName(s.n), lt.Path, lt.PathReason)
		}
		return d
	})
	// Back to the configuration of the other cases (its index is now stale: the next full
	// zone would be a replace, which the agent would say).
	pt.agent.restart(func(c *harness.AgentConfig) { delete(c.Service, "diff_index_dir") })
	waitPurged(t, db)
}

// target returns the target with key.
func (s *sizeRun) target(key string) target {
	for _, tg := range s.targets {
		if tg.key == key {
			return tg
		}
	}
	s.t.Fatalf("no target %s", key)
	return target{}
}

// sync brings every target (which: nil for all) to the primary's serial outside any
// measurement: a target that does not hold the zone is given it, the others are told by
// NOTIFY.
func (s *sizeRun) sync(which func(target) bool) {
	t := s.t
	for _, tg := range s.targets {
		if which != nil && !which(tg) {
			continue
		}
		serial, held := tg.probe()
		if held && serial == s.z.Serial {
			continue
		}
		start := time.Now()
		trigger := tg.add
		if held {
			trigger = tg.notify
		}
		if err := trigger(); err != nil {
			t.Fatalf("%s: bringing it to serial %d: %v", tg.key, s.z.Serial, err)
		}
		d, err := waitFor(start, 30*time.Minute, servesSerial(tg.probe, s.z.Serial))
		if err != nil {
			t.Fatalf("%s: bringing it to serial %d: %v", tg.key, s.z.Serial, err)
		}
		msg := fmt.Sprintf("%s: %s brought to serial %d (unmeasured) in %s", sizeName(s.n), tg.key, s.z.Serial, fmtDur(d))
		if tg.agent != nil {
			if lt, ok := tg.agent.transferTo(s.zone, s.z.Serial); ok {
				msg += ", apply " + lt.Path
			}
		}
		t.Log(msg)
	}
}

// fullZonePrimary makes the primary answer every IXFR with the whole zone: `provide-ixfr
// no;` in its options (BIND 9 ARM, "provide-ixfr"), applied by rndc reconfig.
func (s *sizeRun) fullZonePrimary() {
	t := s.t
	conf := filepath.Join(s.p.Dir(), "named.conf")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.Contains(text, "provide-ixfr no;") {
		text = strings.Replace(text, "options {\n", "options {\n\tprovide-ixfr no;\n", 1)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := s.p.Rndc("reconfig"); err != nil {
		t.Fatalf("rndc reconfig: %v: %s", err, out)
	}
}

// checkFullAnswer fails the test unless the primary answers an IXFR from serial (one it
// has a journal for: ixfr-from-differences) with the whole zone (RFC 1995 §4: an
// AXFR-style answer, the second record not a SOA).
func (s *sizeRun) checkFullAnswer(from uint32) {
	m := new(dns.Msg)
	m.SetIxfr(s.zone, from, "ns1."+s.zone, "hostmaster."+s.zone)
	tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second}
	ch, err := tr.In(m, s.p.Addr())
	if err != nil {
		s.t.Fatalf("IXFR from %d: %v", from, err)
	}
	var first []dns.RR
	n := 0
	for env := range ch {
		if env.Error != nil {
			s.t.Fatalf("IXFR from %d: %v", from, env.Error)
		}
		if len(first) < 2 {
			first = append(first, env.RR...)
		}
		n += len(env.RR)
	}
	if len(first) < 2 || first[1].Header().Rrtype == dns.TypeSOA {
		s.t.Fatalf("the primary answers an IXFR from %d incrementally (%d records): provide-ixfr no did not apply", from, n)
	}
	s.t.Logf("%s: IXFR from %d answered with the whole zone (%d records)", sizeName(s.n), from, n)
}

// rowsWritten is the MariaDB server's count of rows written since it started:
// Handler_write + Handler_delete + Handler_update (SHOW GLOBAL STATUS; MariaDB counts
// internal temporary tables apart, in Handler_tmp_*).
func rowsWritten(db *sql.DB) (int64, error) {
	rs, err := db.Query(`SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_write', 'Handler_delete', 'Handler_update')`)
	if err != nil {
		return 0, fmt.Errorf("SHOW GLOBAL STATUS: %w", err)
	}
	defer rs.Close()
	var sum int64
	n := 0
	for rs.Next() {
		var name string
		var v int64
		if err := rs.Scan(&name, &v); err != nil {
			return 0, err
		}
		sum += v
		n++
	}
	if n != 3 {
		return 0, fmt.Errorf("SHOW GLOBAL STATUS: %d of the 3 Handler_ counters", n)
	}
	return sum, rs.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

package bench

// Where a CREATE's time goes (issue 15): the many-zones CREATE run of table (a) on the
// profiling build, with the CPU profile of the whole run, the heap once every zone is
// held, and the primary's own AXFR rate for the same zones (the ceiling of any secondary).

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

var (
	flagProfOut     = flag.String("prof-out", "", "TestBenchManyProfile: keep the profiles in this directory")
	flagProfWorkers = flag.String("prof-workers", "", "TestBenchManyProfile: the agent's workers (default: the agent's)")
)

// TestBenchManyProfile profiles CREATEs of -many zones on -many-parts backends (file,
// powerdns) and prints the breakdown (DNSAGENT_BENCH=1).
func TestBenchManyProfile(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1")
	}
	harness.Require(t, "named")
	out := *flagProfOut
	if out == "" {
		out = t.TempDir()
	}
	parts := parseParts(*flagManyParts)
	if len(parts) == 0 {
		parts = map[string]bool{"file": true}
	}
	for _, n := range parseCounts(t, *flagMany) {
		zones := make([]string, n)
		for i := range zones {
			zones[i] = manyZoneName(i)
		}
		p := startManyPrimary(t, zones)
		lat, failed, took := inParallel(zones, func(z string) bool { return axfrOnce(p.Addr(), z) })
		t.Logf("primary's own AXFR rate, %d zones, %d in flight: %.0f zones/s, p99 %s, %d failed (load %s)",
			n, manyInFlight, float64(n)/took.Seconds(), fmtDur(p99(lat)), failed, loadavg())
		base := harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", CreateTimeout: "60", Workers: *flagProfWorkers}
		if parts["file"] {
			cfg := base
			cfg.ZoneFilePath = t.TempDir()
			pa := startProfiledAgent(t, "file-prof", cfg)
			var r manyRow
			report := pa.profileCase(t, out, fmt.Sprintf("file-create-%d", n), func() { r = createMany(t, pa.agent, zones, nil) })
			t.Logf("file: %.0f zones/s, p99 %s, %d failed, RSS %s, CPU %s %s (load %s)\n%s", r.rate(), fmtDur(r.P99), r.Failed,
				fmtMiB(r.RSS), r.CPU, r.Comment, loadavg(), report)
			heapAt(t, pa, out, fmt.Sprintf("file-held-%d", n))
		}
		if parts["powerdns"] {
			m := harness.StartMariaDB(t)
			db := m.NewPDNSDatabase(t)
			ps := harness.StartPDNS(t, m, db, harness.PDNSOptions{ZoneCache: true})
			cfg := powerdnsConfig(base, m, db, ps)
			pa := startProfiledAgent(t, "powerdns-prof", cfg)
			var r manyRow
			report := pa.profileCase(t, out, fmt.Sprintf("powerdns-create-%d", n), func() {
				r = createMany(t, pa.agent, zones, map[string]int{"pdns_server": ps.PID(), "mariadbd": m.PID()})
			})
			t.Logf("powerdns: %.0f zones/s, p99 %s, %d failed, RSS %s, CPU %s %s (load %s)\n%s", r.rate(), fmtDur(r.P99), r.Failed,
				fmtMiB(r.RSS), r.CPU, r.Comment, loadavg(), report)
		}
	}
}

// heapAt writes the heap profile of the agent as it is now, after a GC, and logs its top.
func heapAt(t *testing.T, pa *profiledAgent, out, name string) {
	c := &http.Client{Timeout: 30 * time.Second}
	prof, err := fetch(c, "http://"+pa.pprofAddr+"/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, name+".heap.pprof")
	if err := os.WriteFile(path, prof, 0o644); err != nil {
		t.Fatal(err)
	}
	rss, _, _ := harness.ProcMemory(pa.pid())
	t.Logf("%s: RSS %s, heap in use:\n%s", name, fmtMiB(rss), pprofTop(path, "-sample_index=inuse_space", "-nodecount=25"))
}

// axfrOnce transfers zone from addr by AXFR over TCP and reports whether it ended with
// the closing SOA.
func axfrOnce(addr, zone string) bool {
	m := new(dns.Msg)
	m.SetAxfr(zone)
	tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	ch, err := tr.In(m, addr)
	if err != nil {
		return false
	}
	soas := 0
	for env := range ch {
		if env.Error != nil {
			return false
		}
		for _, rr := range env.RR {
			if rr.Header().Rrtype == dns.TypeSOA {
				soas++
			}
		}
	}
	return soas == 2
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.14s, %d CPUs", data, runtime.NumCPU())
}

package bind9_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/bind9"
	"github.com/dnsagent/dnsagent/tests/harness"
)

const bigZoneSize = 100_000

// changed are the records a change set of round i of the big-zone tests rewrites: ten A
// records whose address says the round.
func changed(t testing.TB, round int) []dns.RR {
	var rrs []dns.RR
	for k := range 10 {
		rrs = append(rrs, rr(t, fmt.Sprintf("chg-%d.%s 300 IN A 10.%d.%d.%d", k, zone, k, round/256%256, round%256)))
	}
	return rrs
}

// createBig creates a zone of bigZoneSize records plus the ten changing ones at round 0.
func createBig(t testing.TB, b *bind9.Backend) time.Duration {
	t.Helper()
	rrs := backendtest.Zone(zone, 1, bigZoneSize)
	rrs = append(rrs, rr(t, "ns1."+zone+" 3600 IN A 192.0.2.53"))
	rrs = append(rrs, changed(t, 0)...)
	start := time.Now()
	if err := b.Create(t.Context(), zone, backendtest.Stream(backendtest.Batches(rrs, 500)...)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// round is the change set taking the ten records from round-1 to round (serial round to
// round+1).
func round(t testing.TB, i int) *backend.ChangeSet {
	return &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{
		Old: soa(t, uint32(i)), New: soa(t, uint32(i+1)), Deleted: changed(t, i-1), Added: changed(t, i),
	}}}
}

// Acceptance 3 at the backend: ten changed records of a 100,000-record zone reach named as
// one dynamic update, named keeps the primary's serial, and named does not reload (its log
// and the zone file, which named has no reason to touch, say so).
func TestUpdateModeTenChangesInBigZone(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("100,000-record zone")
	}
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	took := createBig(t, b)
	t.Logf("create of %d records (write + addzone + load): %v", bigZoneSize, took)
	path := filepath.Join(n.ZoneDir(), "example.com.zone")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mark := len(n.Output())

	cs := round(t, 1)
	start := time.Now()
	if err := b.Apply(t.Context(), zone, cs); err != nil {
		t.Fatal(err)
	}
	t.Logf("apply of 10 changed records in update mode: %v", time.Since(start))

	if s, err := n.Serial(zone); err != nil || s != cs.To() {
		t.Fatalf("named serves serial %d (%v), want the primary's %d", s, err, cs.To())
	}
	served(t, n, cs.Steps[0].Added)
	if r := n.Query(t, "chg-0."+zone, dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("chg-0 has %d A records, want the new one only: %v", len(r.Answer), r.Answer)
	}
	if !n.WaitLog(mark, "hostmaster.example.com. 2 ", 2*time.Second) {
		t.Errorf("named did not log the UPDATE; its log:\n%s", n.Output()[mark:])
	}
	log := n.Output()[mark:]
	if strings.Contains(log, "loaded serial 2") || strings.Contains(log, "freezing zone") {
		t.Errorf("named reloaded the zone for a 10-record change; its log:\n%s", log)
	}
	t.Logf("named's log of the apply:\n%s", log)
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("the 5 MB zone file was rewritten for a 10-record change")
	}
}

// BenchmarkApplyTenInBigZone compares the modes for ten changed records in a
// 100,000-record zone: update mode sends one UPDATE, reload mode rewrites the file and
// makes named load all of it.
//
//	go test ./backend/bind9 -run - -bench ApplyTenInBigZone -benchtime 10x
func BenchmarkApplyTenInBigZone(b *testing.B) {
	for _, mode := range []string{bind9.ModeUpdate, bind9.ModeReload} {
		b.Run(mode, func(b *testing.B) {
			be, _ := setup(b, mode, harness.BackendOptions{})
			createBig(b, be)
			changes := make([]*backend.ChangeSet, b.N)
			for i := range changes {
				changes[i] = round(b, i+1)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := be.Apply(b.Context(), zone, changes[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

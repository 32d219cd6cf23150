package transfer

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/internal/dnstest"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// manyPrimary serves every zone under "test." (SOA and AXFR: SOA, NS, SOA) over TCP, at
// serial 1 unless bumped, and records when each SOA query arrived.
type manyPrimary struct {
	addr netip.AddrPort

	mu      sync.Mutex
	serials map[string]uint32
	soaAt   []time.Time
}

func startManyPrimary(t *testing.T) *manyPrimary {
	t.Helper()
	p := &manyPrimary{serials: map[string]uint32{}}
	p.addr = dnstest.ServeTCP(t, "127.0.0.1", p.serve, nil)
	return p
}

func (p *manyPrimary) serve(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	p.mu.Lock()
	serial := max(p.serials[q.Name], 1)
	if q.Qtype == dns.TypeSOA {
		p.soaAt = append(p.soaAt, time.Now())
	}
	p.mu.Unlock()
	rrs := manyZone(q.Name, serial)
	m := new(dns.Msg).SetReply(r)
	m.Authoritative = true
	switch q.Qtype {
	case dns.TypeSOA:
		m.Answer = rrs[:1]
	case dns.TypeAXFR, dns.TypeIXFR:
		m.Answer = append(rrs, rrs[0])
	}
	w.WriteMsg(m)
}

// manyZone is the zone manyPrimary serves: its SOA, then one NS record.
func manyZone(name string, serial uint32) []dns.RR {
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns: "ns1.test.", Mbox: "admin.test.", Serial: serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
	ns := &dns.NS{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "ns1.test."}
	return []dns.RR{soa, ns}
}

// soaTimes returns the arrival times of the SOA queries since since.
func (p *manyPrimary) soasSince(since time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, at := range p.soaAt {
		if !at.Before(since) {
			out = append(out, at)
		}
	}
	return out
}

// peakPerSecond is the most arrivals within any one second (a sliding window).
func peakPerSecond(at []time.Time) int {
	peak, first := 0, 0
	for i := range at {
		for at[i].Sub(at[first]) >= time.Second {
			first++
		}
		peak = max(peak, i-first+1)
	}
	return peak
}

// heldZones stores n zones z0.test. ... at serial 1 in a memory backend, as the zones an
// agent holds when it restarts. They are stored directly, not transferred: 2000 CREATEs at
// once through a manager made this setup, not the test, time out on a loaded machine.
func heldZones(t *testing.T, n int) *memory.Backend {
	t.Helper()
	be := memory.New()
	for i := range n {
		name := fmt.Sprintf("z%d.test.", i)
		if err := be.Create(context.Background(), name, backendtest.Stream(manyZone(name, 1))); err != nil {
			t.Fatal(err)
		}
	}
	return be
}

func TestStartupChecksKeepToMaxChecksPerSecond(t *testing.T) {
	const zones, perSecond = 150, 50
	p := startManyPrimary(t)
	be := heldZones(t, zones)
	// 8 workers: background slots beyond one, so the pace, not the workers, is what bounds.
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 8, DialTimeout: time.Second,
		StallTimeout: time.Second, RetryMin: time.Minute, StartupSpread: 100 * time.Millisecond,
		MaxChecksPerSecond: perSecond, checked: make(chan struct{}, 1)}, be, zap.NewNop())
	t.Cleanup(m.Close)
	start := time.Now()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The spread grows from 100 ms to zones/perSecond (3 s), and every zone is checked.
	unchecked := zones
	waitCheck(t, m, func() string { return fmt.Sprintf("%d start-up checks not done", unchecked) }, func() bool {
		_, _, unchecked = m.counts()
		return unchecked == 0
	})
	took := time.Since(start)
	soas := p.soasSince(start)
	if len(soas) != zones {
		t.Errorf("%d SOA queries for %d zones, want one each", len(soas), zones)
	}
	if peak := peakPerSecond(soas); peak > perSecond {
		t.Errorf("the primary saw %d SOA queries within one second, cap %d", peak, perSecond)
	}
	if min := time.Duration(zones-perSecond) * time.Second / perSecond; took < min {
		t.Errorf("%d start-up checks done in %v at %d/s: want at least %v", zones, took, perSecond, min)
	}
}

// A NOTIFY goes ahead of the start-up checks waiting for the master's pace. To tell that
// apart from one that merely waits its turn (at 20/s, 51 ms: nothing a loaded machine's
// timing could tell), the pace is booked an hour ahead once the checks are under way, as
// behind a queue of 72,000 of them: a NOTIFY waiting for its turn, or for a worker held by
// a background check, is not acted on for an hour.
func TestNotifyGoesAheadOfStartupChecks(t *testing.T) {
	const zones, perSecond = 2000, 20 // the start-up checks take 100 s
	p := startManyPrimary(t)
	be := heldZones(t, zones)
	var checked atomic.Int32
	m, _ := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, StartupSpread: time.Millisecond,
		MaxChecksPerSecond: perSecond, OnChecked: func(string, bool) { checked.Add(1) }}, be)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string { return "no start-up check done" }, func() bool { return checked.Load() > 0 })
	m.mu.Lock()
	m.pacers[p.addr].next = time.Now().Add(time.Hour)
	m.mu.Unlock()
	// Every background slot holds a check waiting for its turn.
	eventually(t, func() string { return "the background slots are not all taken" }, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.background == m.backgroundSlots()
	})
	zone := "z1999.test."
	p.mu.Lock()
	p.serials[zone] = 2
	p.mu.Unlock()
	start := time.Now()
	if err := m.Notify(context.Background(), zone, Notify{Serial: 2, HasSerial: true}); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, be, zone, 2)
	t.Logf("NOTIFY applied after %v", time.Since(start))
}

// namesBackend lists n zones and holds none: what Start needs to arm their checks.
type namesBackend struct {
	*memory.Backend
	names []string
}

func (b namesBackend) Zones(context.Context) ([]string, error) { return b.names, nil }

// The scheduler's memory per held zone, checked once with a transfer summary kept: the
// state of an agent that created its zones by CREATE (README, Scale: at most 1 KiB a zone
// for the whole agent).
func TestSchedulerMemoryPerZone(t *testing.T) {
	const n = 100_000
	before, goroutines := heapInUse(), runtime.NumGoroutine()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("zone-%06d.example.com.", i)
	}
	be := namesBackend{memory.New(), names}
	master := netip.MustParseAddrPort("127.0.0.1:53")
	// Spread over years, so that no start-up check falls due while the test runs: a zone
	// checked is dropped (this backend holds none), and under -race the test takes long
	// enough for dozens of an hour's spread to fall due.
	m := NewManager(Config{Masters: []netip.AddrPort{master}, Workers: 8, StartupSpread: 10 * 365 * 24 * time.Hour}, be, zap.NewNop())
	defer m.Close()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	for _, z := range m.zones {
		sum := &Summary{Zone: z.name, Master: master.String(), Type: "AXFR", To: 1, Records: 3, Bytes: 200,
			Path: "create", Result: "applied", At: time.Now()}
		o := outcome{primary: &soaTimes{serial: 1, refresh: 3600, retry: 600, expire: 86400},
			applied: 1, changed: true, summary: sum}
		m.recordLocked(z, o)
		m.armAfterLocked(z, o)
	}
	m.mu.Unlock()
	perZone := (heapInUse() - before) / n
	runtime.KeepAlive(names)
	t.Logf("scheduler heap per zone: %d bytes (its name and the list of names included)", perZone)
	// 260 bytes measured (the zone's state 112, the last transfer 64, the map's share, the
	// name and the list's 40), 324 before the state's times took 8 bytes each: 100,000
	// zones hold about 6 MiB less, 12 MiB less RSS at the GC's default headroom.
	if perZone > 288 {
		t.Errorf("scheduler heap per zone %d bytes, want at most 288", perZone)
	}
	m.mu.Lock()
	got := len(m.due)
	m.mu.Unlock()
	if got < n-m.backgroundSlots() { // a few fell due and were started
		t.Errorf("%d zones armed, want %d", got, n)
	}
	if grown := runtime.NumGoroutine() - goroutines; grown > 10 {
		t.Errorf("%d goroutines more with %d zones armed, want a handful", grown, n)
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func TestStatusPage(t *testing.T) {
	be := namesBackend{memory.New(), []string{"c.test.", "a.test.", "e.test.", "b.test.", "d.test."}}
	m := NewManager(Config{Masters: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}, Workers: 2,
		StartupSpread: time.Hour}, be, zap.NewNop())
	defer m.Close()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, more := m.StatusPage("", after, 2)
		for _, st := range page {
			got = append(got, st.Zone)
		}
		if !more {
			break
		}
		after = page[len(page)-1].Zone
	}
	if fmt.Sprint(got) != "[a.test. b.test. c.test. d.test. e.test.]" {
		t.Errorf("pages of 2 gave %v, want every zone once, sorted", got)
	}
	if page, _ := m.StatusPage("retrying", "", 10); len(page) != 0 {
		t.Errorf("state=retrying gave %d zones, want none", len(page))
	}
	if page, more := m.StatusPage("idle", "", 10); len(page) != 5 || more {
		t.Errorf("state=idle gave %d zones (more %v), want 5", len(page), more)
	}
}

// A background check whose IXFR fails sends an AXFR after it: a request of its own, which
// waits for its turn under max_checks_per_second like the SOA query and the IXFR before
// it. At 4 a second (a turn every 255 ms): the CREATE's AXFR takes the first turn, the
// refresh's SOA query, IXFR and AXFR one each after it.
func TestAXFRFallbackWaitsForItsTurn(t *testing.T) {
	const perSecond = 4
	turn := time.Duration(float64(time.Second) * paceMargin / perSecond)
	p := startPrimary(t, "example.com.", 1, 10)
	p.set(func(p *fakePrimary) { p.ixfr = "notimp" })
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, MaxChecksPerSecond: perSecond,
		RefreshInterval: 50 * time.Millisecond}, memory.New())
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	p.setZone(2, 10)
	waitApplied(t, m, be, "example.com.", 2)
	if p.ixfrs.Load() == 0 || p.axfrs.Load() != 2 {
		t.Fatalf("%d IXFRs and %d AXFRs: want the refresh's IXFR refused and one AXFR after it", p.ixfrs.Load(), p.axfrs.Load())
	}
	if at := time.Unix(0, p.lastRequest.Load()).Sub(created); at < 3*turn-50*time.Millisecond {
		t.Errorf("the fallback AXFR came %v after the CREATE, want its own turn: at least 3 turns (%v)", at, 3*turn)
	}
}

// Ensure (a catalog making sure of its members after a restart or a failure, possibly
// thousands at once) keeps to the background pace and waits for a background slot, as a
// refresh does: it never holds the worker a NOTIFY or a CREATE needs. A CREATE of a zone
// an Ensure waits for goes ahead, and answers both. The pace is booked an hour ahead, as
// behind a long queue of checks.
func TestEnsureKeepsToThePace(t *testing.T) {
	p := startManyPrimary(t)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, MaxChecksPerSecond: 20}, memory.New())
	m.mu.Lock()
	m.pacers[p.addr] = &pacer{next: time.Now().Add(time.Hour)}
	m.mu.Unlock()
	ensured := make(chan error, 8)
	for i := range 8 { // more than the workers (2): each would hold one while it waits
		go func() { ensured <- m.Ensure(context.Background(), fmt.Sprintf("z%d.test.", i)) }()
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-ensured:
		t.Fatalf("an Ensure was answered (%v) though the pace is booked an hour ahead", err)
	default:
	}
	// The zone whose check holds the background slot, waiting for its turn, and a zone no
	// Ensure waits for: both created at once.
	var running string
	m.mu.Lock()
	for name, z := range m.zones {
		if z.job != nil && z.job.background {
			running = name
		}
	}
	m.mu.Unlock()
	if running == "" {
		t.Fatal("no Ensure's check holds the background slot")
	}
	for _, zone := range []string{"new.test.", running} {
		ctx, cancel := context.WithTimeout(context.Background(), eventuallyWithin)
		defer cancel()
		if err := m.Create(ctx, zone); err != nil {
			t.Fatalf("CREATE of %s behind the booked pace and 8 Ensures: %v", zone, err)
		}
		waitSerial(t, be, zone, 1)
	}
	select {
	case err := <-ensured:
		if err != nil {
			t.Errorf("the Ensure of %s, answered by the CREATE: %v", running, err)
		}
	case <-time.After(eventuallyWithin):
		t.Errorf("the Ensure of %s is still waiting after the CREATE made the zone", running)
	}
	m.Close()
	for range 7 {
		if err := <-ensured; err == nil {
			t.Error("an Ensure still waiting for the pace succeeded at shutdown")
		}
	}
}

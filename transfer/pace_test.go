package transfer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/memory"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(p.serve), NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	p.addr = netip.MustParseAddrPort(ln.Addr().String())
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
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns: "ns1.test.", Mbox: "admin.test.", Serial: serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
	m := new(dns.Msg).SetReply(r)
	m.Authoritative = true
	switch q.Qtype {
	case dns.TypeSOA:
		m.Answer = []dns.RR{soa}
	case dns.TypeAXFR, dns.TypeIXFR:
		ns := &dns.NS{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "ns1.test."}
		m.Answer = []dns.RR{soa, ns, soa}
	}
	w.WriteMsg(m)
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

// heldZones creates n zones z0.test. ... in a memory backend through a manager without a
// cap, as the zones an agent holds when it restarts.
func heldZones(t *testing.T, p *manyPrimary, n int) *memory.Backend {
	t.Helper()
	be := memory.New()
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 8, DialTimeout: time.Second,
		StallTimeout: time.Second}, be, zap.NewNop())
	defer m.Close()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- m.Create(context.Background(), fmt.Sprintf("z%d.test.", i)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return be
}

func TestStartupChecksKeepToMaxChecksPerSecond(t *testing.T) {
	const zones, perSecond = 150, 50
	p := startManyPrimary(t)
	be := heldZones(t, p, zones)
	// 8 workers: background slots beyond one, so the pace, not the workers, is what bounds.
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 8, DialTimeout: time.Second,
		StallTimeout: time.Second, RetryMin: time.Minute, StartupSpread: 100 * time.Millisecond,
		MaxChecksPerSecond: perSecond}, be, zap.NewNop())
	t.Cleanup(m.Close)
	start := time.Now()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The spread grows from 100 ms to zones/perSecond (3 s), and every zone is checked.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, unchecked := m.counts(); unchecked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start-up checks not all done after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
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

func TestNotifyGoesAheadOfStartupChecks(t *testing.T) {
	const zones, perSecond = 2000, 20 // the start-up checks take 100 s
	p := startManyPrimary(t)
	be := heldZones(t, p, zones)
	m, _ := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, StartupSpread: time.Millisecond,
		MaxChecksPerSecond: perSecond}, be)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the background checks are under way, zones are due
	zone := "z1999.test."
	p.mu.Lock()
	p.serials[zone] = 2
	p.mu.Unlock()
	start := time.Now()
	if err := m.Notify(context.Background(), zone, Notify{Serial: 2, HasSerial: true}); err != nil {
		t.Fatal(err)
	}
	for {
		if serial, _ := be.Serial(context.Background(), zone); serial == 2 {
			break
		}
		if time.Since(start) > time.Second {
			_, _, unchecked := m.counts()
			t.Fatalf("NOTIFY not acted on within 1 s (%d zones still to check at start-up)", unchecked)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("NOTIFY applied after %v", time.Since(start))
	if _, _, unchecked := m.counts(); unchecked < zones-2*perSecond {
		t.Errorf("%d zones left to check, want the start-up checks kept to %d/s", unchecked, perSecond)
	}
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
	m := NewManager(Config{Masters: []netip.AddrPort{master}, Workers: 8, StartupSpread: time.Hour}, be, zap.NewNop())
	defer m.Close()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	for _, z := range m.zones {
		sum := &Summary{Zone: z.name, Master: master.String(), Type: "AXFR", To: 1, Records: 3, Bytes: 200,
			Path: "create", Result: "applied", At: time.Now()}
		m.afterCheckLocked(z, outcome{primary: &soaTimes{serial: 1, refresh: 3600, retry: 600, expire: 86400},
			applied: 1, changed: true, summary: sum})
	}
	m.mu.Unlock()
	perZone := (heapInUse() - before) / n
	runtime.KeepAlive(names)
	t.Logf("scheduler heap per zone: %d bytes (its name and the list of names included)", perZone)
	if perZone > 640 {
		t.Errorf("scheduler heap per zone %d bytes, want at most 640", perZone)
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

package transfer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/internal/dnstest"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// sameRecords compares the backend's copy of a zone with the primary's, as sets.
func sameRecords(t *testing.T, be *memory.Backend, p *fakePrimary) {
	t.Helper()
	got, _ := be.Records(p.zone)
	p.mu.Lock()
	want := p.records
	p.mu.Unlock()
	keys := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			out = append(out, backend.Key(rr))
		}
		slices.Sort(out)
		return out
	}
	if g, w := keys(got), keys(want); !slices.Equal(g, w) {
		t.Fatalf("backend holds %d records, primary serves %d; they differ", len(g), len(w))
	}
}

func lastTransfer(t *testing.T, m *Manager, zone string) *Summary {
	t.Helper()
	st, ok := m.Status(zone)
	if !ok || st.LastTransfer == nil {
		t.Fatalf("no transfer recorded for %s", zone)
	}
	return st.LastTransfer
}

func TestIXFRAppliesChanges(t *testing.T) {
	p, m, be := startCreated(t, 1, 100)
	ctx := context.Background()
	p.setZone(2, 96)
	p.setZone(3, 90) // two version steps behind
	m.Notify(ctx, "example.com.", Notify{})
	waitApplied(t, m, be, "example.com.", 3)
	m.Close()
	sameRecords(t, be, p)
	if sum := lastTransfer(t, m, "example.com."); sum.Type != "IXFR" || sum.From != 1 || sum.To != 3 || sum.Fallback != "" {
		t.Errorf("transfer %+v, want an IXFR from 1 to 3", sum)
	}
	if p.axfrs.Load() != 1 {
		t.Errorf("%d AXFRs, want only the CREATE's", p.axfrs.Load())
	}
}

func TestIXFRFailuresFallBackToAXFR(t *testing.T) {
	for _, mode := range []string{"notimp", "cut", "badchain"} {
		t.Run(mode, func(t *testing.T) {
			p := startPrimary(t, "example.com.", 1, 100)
			m, be := newManager(t, p.addr)
			ctx := context.Background()
			if err := m.Create(ctx, "example.com."); err != nil {
				t.Fatal(err)
			}
			p.set(func(p *fakePrimary) { p.ixfr = mode })
			p.setZone(2, 90)
			m.Notify(ctx, "example.com.", Notify{})
			waitApplied(t, m, be, "example.com.", 2)
			m.Close()
			sameRecords(t, be, p)
			if sum := lastTransfer(t, m, "example.com."); sum.Type != "AXFR" || sum.Fallback == "" {
				t.Errorf("transfer %+v, want an AXFR saying why the IXFR was abandoned", sum)
			}
		})
	}
}

func TestIXFRAnsweredWithFullZoneIsAReplace(t *testing.T) {
	p, m, be := startCreated(t, 1, 100)
	ctx := context.Background()
	p.set(func(p *fakePrimary) { p.ixfr = "full" }) // as a primary that lost its journal
	p.setZone(2, 80)
	m.Notify(ctx, "example.com.", Notify{})
	waitApplied(t, m, be, "example.com.", 2)
	m.Close()
	sameRecords(t, be, p)
	if sum := lastTransfer(t, m, "example.com."); sum.Type != "IXFR-full" {
		t.Errorf("transfer %+v, want the full-zone IXFR applied as is", sum)
	}
}

func TestIXFRThatDoesNotFitTheStoredZoneFallsBack(t *testing.T) {
	p, m, be := startCreated(t, 1, 100)
	ctx := context.Background()
	// Someone changed the stored zone behind the agent's back: same serial, fewer records.
	if err := be.Replace(ctx, "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 1, 10))); err != nil {
		t.Fatal(err)
	}
	p.setZone(2, 99)
	m.Notify(ctx, "example.com.", Notify{})
	waitApplied(t, m, be, "example.com.", 2)
	m.Close()
	sameRecords(t, be, p)
	if sum := lastTransfer(t, m, "example.com."); sum.Type != "AXFR" || !strings.Contains(sum.Fallback, "not in the zone") {
		t.Errorf("transfer %+v, want an AXFR after the inconsistent IXFR", sum)
	}
}

func TestRetryAfterPrimaryComesBack(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 10)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, RetryMin: 50 * time.Millisecond}, memory.New())
	ctx := context.Background()
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	p.set(func(p *fakePrimary) { p.down = true })
	p.setZone(2, 10)
	m.Notify(ctx, "example.com.", Notify{})
	var st Status
	waitCheck(t, m, func() string { return fmt.Sprintf("no retries while the primary was down: %+v", st) }, func() bool {
		st, _ = m.Status("example.com.")
		return st.Failures >= 2
	})
	if st.LastError == "" || st.NextCheck.IsZero() || st.State != "retrying" && st.State != "transferring" && st.State != "queued" {
		t.Errorf("status while the primary is down: %+v", st)
	}
	p.set(func(p *fakePrimary) { p.down = false })
	waitApplied(t, m, be, "example.com.", 2) // no new NOTIFY
	if st, _ := m.Status("example.com."); st.Failures != 0 || *st.AppliedSerial != 2 || *st.PrimarySerial != 2 {
		t.Errorf("status after recovery: %+v", st)
	}
}

func TestRetryDelayIsBoundedBySOARetry(t *testing.T) {
	m := NewManager(Config{Workers: 1, RetryMin: time.Second}, memory.New(), nil)
	s := &schedule{primary: soaTimes{retry: 10}, hasPrimary: true}
	for failures, bound := range []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		if failures == 0 {
			continue
		}
		s.failures = failures
		if d := m.retryDelay(s); d > bound || d < bound*3/4 {
			t.Errorf("after %d failures retry in %v, want within [%v, %v]", failures, d, bound*3/4, bound)
		}
	}
}

func TestPeriodicRefreshWithoutNotify(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 10)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, RefreshInterval: 100 * time.Millisecond}, memory.New())
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	p.setZone(2, 12)
	waitApplied(t, m, be, "example.com.", 2)
}

func TestStartChecksZonesAlreadyHeld(t *testing.T) {
	p := startPrimary(t, "example.com.", 5, 10)
	be := memory.New()
	if err := be.Create(context.Background(), "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 4, 10))); err != nil {
		t.Fatal(err)
	}
	m, _ := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, StartupSpread: 50 * time.Millisecond}, be)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 5)
}

func TestTSIGSignedTransfers(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 100)
	p.tsig = "transfer.key."
	good := &tsigkey.Key{Name: "transfer.key.", Algorithm: dns.HmacSHA256, Secret: tsigSecret}
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, Key: good}, memory.New())
	ctx := context.Background()
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatalf("signed CREATE: %v", err)
	}
	p.setZone(2, 90)
	m.Notify(ctx, "example.com.", Notify{})
	waitApplied(t, m, be, "example.com.", 2) // signed IXFR, multi-message, verified

	wrong := &tsigkey.Key{Name: "transfer.key.", Algorithm: dns.HmacSHA256, Secret: "d3Jvbmctc2VjcmV0"}
	m2, _ := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, Key: wrong}, memory.New())
	if err := m2.Create(ctx, "example.com."); err == nil || !strings.Contains(err.Error(), "transfer.key.") {
		t.Errorf("CREATE with a wrong secret: %v, want an error naming the key", err)
	}
	m3, _ := newManager(t, p.addr)
	if err := m3.Create(ctx, "example.com."); err == nil || !strings.Contains(err.Error(), "NOTAUTH") {
		t.Errorf("unsigned CREATE to a primary requiring TSIG: %v, want NOTAUTH", err)
	}
}

// blackhole accepts connections and never answers, like a primary that hangs.
func blackhole(t *testing.T) netip.AddrPort {
	return dnstest.ServeConns(t, func(c *net.TCPConn) { <-t.Context().Done() })
}

func TestHangingFirstMasterDoesNotDelayTransfers(t *testing.T) {
	dead := blackhole(t)
	p := startPrimary(t, "example.com.", 1, 10)
	m, _ := newManager(t, dead, p.addr)
	for i := range 3 { // the first attempt finds the hang; later ones skip the master
		start := time.Now()
		if err := m.Delete(context.Background(), "example.com."); err != nil {
			t.Fatal(err)
		}
		if err := m.Create(context.Background(), "example.com."); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("CREATE %d took %v with a hanging first master (stall timeout 2s)", i, took)
		}
	}
}

func TestFailedNewerMasterIsNotReportedUpToDate(t *testing.T) {
	fresh := startPrimary(t, "example.com.", 1, 10)
	stale := startPrimary(t, "example.com.", 1, 10)
	m, be := newManager(t, fresh.addr, stale.addr)
	ctx := context.Background()
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	fresh.set(func(p *fakePrimary) { p.cut, p.ixfr = true, "cut" })
	fresh.setZone(2, 10)
	m.Notify(ctx, "example.com.", Notify{})
	var st Status
	waitCheck(t, m, func() string {
		return fmt.Sprintf("status %+v: the newer master failed, so the check must count as failed", st)
	}, func() bool {
		st, _ = m.Status("example.com.")
		return st.Failures > 0
	})
	waitSerial(t, be, "example.com.", 1)
}

func TestNotifyFloodIsSpacedByMinCheckInterval(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 10)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, MinCheckInterval: 300 * time.Millisecond}, memory.New())
	ctx := context.Background()
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	before := p.soas.Load()
	for i := range 60 { // 600 ms of NOTIFYs, one every 10 ms; the zone changes half-way
		if i == 30 {
			p.setZone(2, 10)
		}
		if err := m.Notify(ctx, "example.com.", Notify{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitApplied(t, m, be, "example.com.", 2) // the change announced mid-flood is not lost
	if n := p.soas.Load() - before; n > 4 {
		t.Errorf("%d SOA checks for 60 NOTIFYs in 600 ms with a 300 ms interval, want at most 4", n)
	}
}

// A master that answers an IXFR with its newer SOA alone (RFC 1995 §4: the changes are to
// be had by AXFR) and leaves the connection open: the AXFR follows within loneSOAWait,
// not after the whole transfer_stall_timeout.
func TestIXFRLoneSOAFallsBackSoon(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 10)
	open := make(chan struct{})
	t.Cleanup(func() { close(open) })
	p.set(func(p *fakePrimary) { p.ixfr, p.open = "lone-soa", open })
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 2, DialTimeout: time.Second,
		StallTimeout: time.Minute, RetryMin: time.Minute, checked: make(chan struct{}, 1)}, memory.New(), zap.NewNop())
	t.Cleanup(m.Close)
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	p.setZone(2, 10)
	start := time.Now()
	if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, m.backend.(*memory.Backend), "example.com.", 2)
	if p.ixfrs.Load() != 1 || p.axfrs.Load() != 2 {
		t.Errorf("%d IXFRs, %d AXFRs: want the IXFR answered with the SOA alone, then an AXFR", p.ixfrs.Load(), p.axfrs.Load())
	}
	t.Logf("serial 2 applied %v after the NOTIFY", time.Since(start))
}

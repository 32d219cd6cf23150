package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

func TestNewerRFC1982(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{2, 1, true},
		{1, 2, false},
		{1, 1, false},
		{0, 4294967295, true}, // wrapped
		{4294967295, 0, false},
		{1 << 31, 0, false}, // exactly half-way is undefined: not newer
		{1<<31 - 1, 0, true},
	}
	for _, tt := range tests {
		if got := Newer(tt.a, tt.b); got != tt.want {
			t.Errorf("Newer(%d, %d) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

var testClient = &Client{DialTimeout: time.Second, StallTimeout: time.Second}

func drain(s *Stream) (int, error) {
	n := 0
	for {
		batch, err := s.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += len(batch)
	}
}

func TestAXFRStream(t *testing.T) {
	p := startPrimary(t, "example.com.", 7, 300)
	s, err := testClient.AXFR(context.Background(), p.addr, "example.com.")
	if err != nil {
		t.Fatal(err)
	}
	if s.Serial() != 7 {
		t.Errorf("serial %d, want 7", s.Serial())
	}
	n, err := drain(s)
	if err != nil || n != len(p.records) {
		t.Errorf("got %d records, %v; want %d (closing SOA left out)", n, err, len(p.records))
	}
}

func TestAXFRStreamRejectsBrokenTransfers(t *testing.T) {
	tests := map[string]struct {
		setup func(p *fakePrimary)
		want  string
	}{
		"cut before the closing SOA": {func(p *fakePrimary) { p.cut = true }, "closed the connection"},
		"out-of-zone record": {func(p *fakePrimary) {
			p.extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "evil.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}}}
		}, "outside the zone"},
		"stall": {func(p *fakePrimary) { p.hold = make(chan struct{}) }, "timeout"},
		// What no zone file or row may hold (backend.CheckRecord): each breaks the load.
		"class CH": {func(p *fakePrimary) {
			p.extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "c.example.com.", Rrtype: dns.TypeA, Class: dns.ClassCHAOS, Ttl: 1}, A: net.IPv4(192, 0, 2, 1)}}
		}, "class CH, not IN"},
		"SOA below the apex": {func(p *fakePrimary) {
			soa := dns.Copy(p.records[0]).(*dns.SOA)
			soa.Hdr.Name = "sub.example.com."
			p.extra = []dns.RR{soa}
		}, "SOA record below the apex"},
		"TSIG among the records": {func(p *fakePrimary) {
			p.extra = []dns.RR{&dns.TSIG{Hdr: dns.RR_Header{Name: "k.example.com.", Rrtype: dns.TypeTSIG, Class: dns.ClassINET}, Algorithm: dns.HmacSHA256}}
		}, "meta-type TSIG"},
		"CAA tag with a semicolon": {func(p *fakePrimary) {
			p.extra = []dns.RR{&dns.CAA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeCAA, Class: dns.ClassINET, Ttl: 1}, Tag: "x;y", Value: "v"}}
		}, `CAA tag "x;y"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := startPrimary(t, "example.com.", 7, 300)
			tt.setup(p)
			if p.hold != nil {
				defer close(p.hold)
			}
			s, err := testClient.AXFR(context.Background(), p.addr, "example.com.")
			if err == nil {
				_, err = drain(s)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSOARefusedNamesRcode(t *testing.T) {
	p := startPrimary(t, "example.com.", 7, 1)
	if _, err := testClient.SOA(context.Background(), p.addr, "other.org."); err == nil {
		t.Error("SOA of a zone the primary refuses: no error")
	}
}

func newManager(t *testing.T, masters ...netip.AddrPort) (*Manager, *memory.Backend) {
	t.Helper()
	return newManagerWith(t, Config{Masters: masters}, memory.New())
}

func newManagerWith(t *testing.T, cfg Config, be *memory.Backend) (*Manager, *memory.Backend) {
	t.Helper()
	return newManagerOn(t, cfg, be), be
}

// newManagerOn is newManagerWith on any backend.
func newManagerOn(t *testing.T, cfg Config, be backend.Backend) *Manager {
	t.Helper()
	cfg.Workers, cfg.DialTimeout, cfg.StallTimeout = 2, time.Second, 2*time.Second
	cfg.checked = make(chan struct{}, 1)
	if cfg.RetryMin == 0 {
		cfg.RetryMin = time.Minute // tests that retry say so
	}
	m := NewManager(cfg, be, zap.NewNop())
	t.Cleanup(m.Close)
	return m
}

// startCreated starts a primary serving example.com. (serial, n records) and a manager
// that has created the zone from it.
func startCreated(t *testing.T, serial uint32, n int) (*fakePrimary, *Manager, *memory.Backend) {
	t.Helper()
	p := startPrimary(t, "example.com.", serial, n)
	m, be := newManager(t, p.addr)
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	return p, m, be
}

// eventuallyWithin bounds the waits for what must happen "eventually": generous, since a
// loaded 2-core machine running -race can be slow, yet short of the minutes a broken
// engine would take (a retry, a refresh).
const eventuallyWithin = 15 * time.Second

// eventually waits until cond holds, failing the test with what it waited for after
// eventuallyWithin.
func eventually(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventuallyWithin)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", eventuallyWithin, what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCheck waits until cond holds, looking again after every check the manager records
// (which signals after its outcome is in Status), failing the test with what it waited
// for after eventuallyWithin. The manager's Config must set checked (newManagerWith does).
func waitCheck(t *testing.T, m *Manager, what func() string, cond func() bool) {
	t.Helper()
	waitCheckWithin(t, m, eventuallyWithin, what, cond)
}

func waitCheckWithin(tb testing.TB, m *Manager, within time.Duration, what func() string, cond func() bool) {
	tb.Helper()
	if m.cfg.checked == nil {
		tb.Fatal("waitCheck: the manager signals no checks; set Config.checked")
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-m.cfg.checked:
		case <-deadline.C:
			tb.Fatalf("after %v: %s", within, what())
		}
	}
}

// waitApplied waits until a check recorded the zone at serial want, then checks that the
// backend holds that serial.
func waitApplied(t *testing.T, m *Manager, be *memory.Backend, zone string, want uint32) {
	t.Helper()
	var st Status
	waitCheck(t, m, func() string { return fmt.Sprintf("zone %s status %+v, want serial %d applied", zone, st, want) },
		func() bool {
			st, _ = m.Status(zone)
			return st.AppliedSerial != nil && *st.AppliedSerial == want
		})
	if got, err := be.Serial(context.Background(), zone); err != nil || got != want {
		t.Fatalf("zone %s: status says serial %d applied, the backend holds %d (%v)", zone, want, got, err)
	}
}

func waitSerial(t *testing.T, be *memory.Backend, zone string, want uint32) {
	t.Helper()
	var (
		got uint32
		err error
	)
	eventually(t, func() string { return fmt.Sprintf("zone %s serial %d (%v), want %d", zone, got, err, want) },
		func() bool {
			got, err = be.Serial(context.Background(), zone)
			return err == nil && got == want
		})
}

func TestCreateNotifyDelete(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 100)
	m, be := newManager(t, p.addr)
	ctx := context.Background()

	if err := m.Notify(ctx, "example.com.", Notify{}); !errors.Is(err, ErrUnknownZone) {
		t.Fatalf("NOTIFY before CREATE: %v, want ErrUnknownZone", err)
	}
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	if rrs, _ := be.Records("example.com."); len(rrs) != 102 { // SOA + NS + 100
		t.Errorf("%d records stored, want 102", len(rrs))
	}
	if err := m.Create(ctx, "example.com."); err != nil || p.axfrs.Load() != 1 {
		t.Errorf("second CREATE: %v after %d transfers; want success without a transfer", err, p.axfrs.Load())
	}

	p.setZone(2, 90)
	if err := m.Notify(ctx, "example.com.", Notify{Serial: 2, HasSerial: true}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 2)

	if err := m.Notify(ctx, "example.com.", Notify{Serial: 2, HasSerial: true}); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Serial(ctx, "example.com."); err == nil {
		t.Error("zone still there after DELETE")
	}
	if err := m.Delete(ctx, "example.com."); err != nil {
		t.Errorf("DELETE of a missing zone: %v, want success", err)
	}
}

func TestNotifyWithOldSerialTransfersNothing(t *testing.T) {
	p, m, _ := startCreated(t, 5, 10)
	ctx := context.Background()
	for _, serial := range []uint32{5, 4, 5 + 1<<31} {
		if err := m.Notify(ctx, "example.com.", Notify{Serial: serial, HasSerial: true}); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	if n := p.axfrs.Load(); n != 1 {
		t.Errorf("%d transfers, want only the CREATE's", n)
	}
}

func TestCreateTimeoutLeavesTransferRunning(t *testing.T) {
	p := startPrimary(t, "example.com.", 3, 10)
	p.hold = make(chan struct{})
	m, be := newManager(t, p.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := m.Create(ctx, "example.com."); err == nil {
		t.Fatal("CREATE returned success while the transfer was held")
	}
	// A repeated CREATE and a NOTIFY join the running job instead of starting another.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	m.Create(ctx2, "example.com.")
	if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
		t.Fatalf("NOTIFY during the CREATE must fold into it, got %v", err)
	}
	close(p.hold)
	waitApplied(t, m, be, "example.com.", 3)
	m.Close()
	if n := p.axfrs.Load(); n != 1 {
		t.Errorf("%d transfers, want 1 (the follow-up check sees the same serial)", n)
	}
}

func TestNotifiesCoalesce(t *testing.T) {
	p, m, be := startCreated(t, 1, 10)
	ctx := context.Background()
	hold := make(chan struct{})
	p.set(func(p *fakePrimary) { p.hold = hold })
	p.setZone(2, 10)
	for range 50 {
		if err := m.Notify(ctx, "example.com.", Notify{}); err != nil {
			t.Fatal(err)
		}
	}
	p.setZone(3, 10)
	p.set(func(p *fakePrimary) { p.hold = nil })
	close(hold)
	waitApplied(t, m, be, "example.com.", 3)
	m.Close()
	if n := p.transfers(); n < 2 || n > 3 {
		t.Errorf("%d transfers for 50 NOTIFYs, want the CREATE's plus one or two", n)
	}
}

func TestDeleteWinsOverRunningTransfer(t *testing.T) {
	p, m, be := startCreated(t, 1, 10)
	ctx := context.Background()
	hold := make(chan struct{})
	p.set(func(p *fakePrimary) { p.hold = hold })
	p.setZone(2, 10)
	m.Notify(ctx, "example.com.", Notify{})
	eventually(t, func() string { return "the NOTIFY's transfer did not start" },
		func() bool { return p.transfers() >= 2 }) // the refresh's transfer is running now
	if err := m.Delete(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	close(hold)
	m.Close()
	if _, err := be.Serial(ctx, "example.com."); err == nil {
		t.Error("a transfer that started before DELETE brought the zone back")
	}
}

func TestHighestSerialMasterWins(t *testing.T) {
	old := startPrimary(t, "example.com.", 4, 10)
	fresh := startPrimary(t, "example.com.", 9, 10)
	m, be := newManager(t, old.addr, fresh.addr)
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 9)
	if old.axfrs.Load() != 0 {
		t.Error("transferred from the master with the older serial")
	}
}

func TestCutTransferKeepsOldZone(t *testing.T) {
	p, m, be := startCreated(t, 1, 200)
	ctx := context.Background()
	p.set(func(p *fakePrimary) { p.cut, p.ixfr = true, "cut" })
	p.setZone(2, 300)
	m.Notify(ctx, "example.com.", Notify{})
	m.Close() // waits for the job
	waitSerial(t, be, "example.com.", 1)
	if rrs, _ := be.Records("example.com."); len(rrs) != 202 {
		t.Errorf("%d records after a cut transfer, want the old 202", len(rrs))
	}
}

func TestCreateFailsWhenNoMasterAnswers(t *testing.T) {
	m, _ := newManager(t, netip.MustParseAddrPort("127.0.0.1:1"))
	err := m.Create(context.Background(), "example.com.")
	if err == nil || !strings.Contains(err.Error(), "AXFR example.com. from 127.0.0.1:1") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %v, want one naming the AXFR from the master and the refused connection", err)
	}
	two, _ := newManager(t, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.2:1"))
	err = two.Create(context.Background(), "example.com.")
	if err == nil || !strings.Contains(err.Error(), "no master answered") {
		t.Errorf("two masters: error %v, want one saying no master answered its SOA query", err)
	}
}

// A CREATE with one master sends it no SOA query, only the AXFR (a burst of CREATEs costs
// the master one connection per zone, not two): the zone's schedule comes from the SOA
// the AXFR starts with. With several masters each is asked its SOA, to take the newest.
func TestCreateAsksOneMasterNoSOA(t *testing.T) {
	p, m, _ := startCreated(t, 7, 10)
	if soas, axfrs := p.soas.Load(), p.axfrs.Load(); soas != 0 || axfrs != 1 {
		t.Errorf("one master: CREATE sent %d SOA queries and %d AXFRs, want none and one", soas, axfrs)
	}
	st, ok := m.Status("example.com.")
	if !ok || st.PrimarySerial == nil || *st.PrimarySerial != 7 || st.NextCheck.IsZero() || st.LastError != "" {
		t.Errorf("status after the CREATE: %+v; want primary serial 7 and the next check armed", st)
	}

	older := startPrimary(t, "example.com.", 6, 10)
	newer := startPrimaryOn(t, "127.0.0.2", "example.com.", 7, 10)
	m2, be := newManager(t, older.addr, newer.addr)
	if err := m2.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, be, "example.com.", 7)
	if older.soas.Load() != 1 || newer.soas.Load() != 1 || newer.axfrs.Load() != 1 || older.axfrs.Load() != 0 {
		t.Errorf("two masters: SOA queries %d and %d, AXFRs %d and %d; want one SOA query each and the newer's AXFR",
			older.soas.Load(), newer.soas.Load(), older.axfrs.Load(), newer.axfrs.Load())
	}
}

// serialCounter counts the backend's serial lookups: for powerdns each is a statement.
type serialCounter struct {
	*memory.Backend
	n atomic.Int32
}

func (c *serialCounter) Serial(ctx context.Context, zone string) (uint32, error) {
	c.n.Add(1)
	return c.Backend.Serial(ctx, zone)
}

// A CREATE of a zone the agent does not know asks the backend once, in its check, not
// before it too; a zone put into the backend behind the agent's back is found by that
// lookup: the CREATE succeeds without asking the masters anything and the zone is left as
// it was. A zone the agent knows is looked up before the CREATE waits for anything, so a
// repeated CREATE is answered while a refresh of its zone hangs. Two masters that
// disagree, zones of 10 messages.
func TestCreateLooksUpTheBackendOnce(t *testing.T) {
	older := startPrimary(t, "example.com.", 6, 500)
	newer := startPrimaryOn(t, "127.0.0.2", "example.com.", 7, 500)
	be := &serialCounter{Backend: memory.New()}
	cfg := Config{Masters: []netip.AddrPort{older.addr, newer.addr}, Workers: 2, DialTimeout: time.Second, StallTimeout: 2 * time.Second, RetryMin: time.Minute}
	m := NewManager(cfg, be, zap.NewNop())
	t.Cleanup(m.Close)
	ctx := context.Background()
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	if n := be.n.Load(); n != 1 {
		t.Errorf("CREATE of a new zone: %d serial lookups in the backend, want 1", n)
	}
	if rrs, _ := be.Records("example.com."); len(rrs) != 502 || rrs[0].(*dns.SOA).Serial != 7 {
		t.Errorf("after the CREATE the backend holds %d records, %v; want the newer master's 502 at serial 7", len(rrs), rrs[0])
	}

	other := backendtest.Zone("other.example.", 3, 2)
	if err := be.Backend.Create(ctx, "other.example.", backendtest.Stream(other)); err != nil {
		t.Fatal(err)
	}
	be.n.Store(0)
	asked := older.soas.Load() + newer.soas.Load() + older.transfers() + newer.transfers()
	if err := m.Create(ctx, "other.example."); err != nil {
		t.Fatalf("CREATE of a zone the backend holds already: %v, want success", err)
	}
	if n, more := be.n.Load(), older.soas.Load()+newer.soas.Load()+older.transfers()+newer.transfers()-asked; n != 1 || more != 0 {
		t.Errorf("CREATE of a zone the backend holds already: %d serial lookups, %d requests to the masters; want 1 and none", n, more)
	}
	if rrs, _ := be.Records("other.example."); len(rrs) != len(other) || rrs[0].(*dns.SOA).Serial != 3 {
		t.Errorf("the zone held behind the agent's back: %d records, %v; want the %d it had", len(rrs), rrs[0], len(other))
	}

	// The repeated CREATE is answered while a refresh of the zone hangs on its transfer.
	hold := make(chan struct{})
	defer close(hold)
	newer.set(func(p *fakePrimary) { p.hold = hold })
	newer.setZone(8, 500)
	m.Notify(ctx, "example.com.", Notify{})
	eventually(t, func() string { return "the NOTIFY's transfer did not start" }, func() bool { return newer.transfers() >= 2 })
	be.n.Store(0)
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := m.Create(tctx, "example.com."); err != nil || be.n.Load() != 1 {
		t.Errorf("repeated CREATE during a refresh: %v after %d serial lookups; want success after one, without waiting for the refresh", err, be.n.Load())
	}
}

// notOwned is a backend in which one zone is another's.
type notOwned struct {
	*memory.Backend
	zone string
}

func (b notOwned) Serial(ctx context.Context, zone string) (uint32, error) {
	if zone == b.zone {
		return 0, fmt.Errorf("held by account %q: %w", "operator", backend.ErrNotOwned)
	}
	return b.Backend.Serial(ctx, zone)
}

// A CREATE of a zone another account holds fails with the backend's reason, transfers
// nothing, and leaves nothing scheduled: no retry, no entry among the agent's zones.
func TestCreateOfAnotherAccountsZone(t *testing.T) {
	p := startPrimary(t, "example.com.", 7, 10)
	cfg := Config{Masters: []netip.AddrPort{p.addr}, Workers: 2, DialTimeout: time.Second, StallTimeout: 2 * time.Second, RetryMin: time.Minute}
	m := NewManager(cfg, notOwned{memory.New(), "example.com."}, zap.NewNop())
	t.Cleanup(m.Close)
	err := m.Create(context.Background(), "example.com.")
	if !errors.Is(err, backend.ErrNotOwned) || !strings.Contains(err.Error(), "operator") {
		t.Errorf("CREATE of another account's zone: %v, want the backend's reason", err)
	}
	if st, ok := m.Status("example.com."); ok {
		t.Errorf("another account's zone is among the agent's after its CREATE failed: %+v", st)
	}
	if n := p.transfers(); n != 0 {
		t.Errorf("%d transfers for another account's zone, want none", n)
	}
}

func TestShutdownLetsRunningTransfersFinishWithinGrace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		grace      time.Duration
		release    bool
		wantSerial uint32
	}{
		{"finishes within grace", 5 * time.Second, true, 2},
		{"cancelled after grace", 100 * time.Millisecond, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPrimary(t, "example.com.", 1, 50)
			m, be := newManager(t, p.addr)
			ctx := context.Background()
			if err := m.Create(ctx, "example.com."); err != nil {
				t.Fatal(err)
			}
			hold := make(chan struct{})
			p.set(func(p *fakePrimary) { p.hold = hold })
			p.setZone(2, 50)
			m.Notify(ctx, "example.com.", Notify{})
			eventually(t, func() string { return "the NOTIFY's transfer did not start" },
				func() bool { return p.transfers() >= 2 })
			if tc.release {
				time.AfterFunc(100*time.Millisecond, func() { close(hold) })
			} else {
				defer close(hold)
			}
			start := time.Now()
			m.Shutdown(tc.grace)
			if took := time.Since(start); took > tc.grace+time.Second {
				t.Errorf("Shutdown took %v with grace %v", took, tc.grace)
			}
			if got, _ := be.Serial(ctx, "example.com."); got != tc.wantSerial {
				t.Errorf("serial %d after shutdown, want %d", got, tc.wantSerial)
			}
			if err := m.Notify(ctx, "example.com.", Notify{}); err != nil {
				t.Errorf("NOTIFY after shutdown: %v", err)
			}
			if n := p.transfers(); n != 2 {
				t.Errorf("%d transfers; none may start after shutdown", n)
			}
		})
	}
}

// A master whose SOA says newer but whose transfer brings an older full zone (masters
// behind one address that disagree, or one that changed between the two answers): the
// zone is kept, its status says the serial the backend holds, not the older one, and the
// check counts as failed, so its retries back off rather than ask again every few seconds.
func TestOlderFullZoneThanItsSOAKeepsTheZone(t *testing.T) {
	p, m, be := startCreated(t, 3, 10)
	p.setZone(2, 10)
	p.set(func(p *fakePrimary) { p.soa, p.ixfr = 5, "full" })
	if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
		t.Fatal(err)
	}
	var st Status
	waitCheck(t, m, func() string { return fmt.Sprintf("status %+v, want the check that saw serial 5", st) }, func() bool {
		st, _ = m.Status("example.com.")
		return p.ixfrs.Load() > 0 && st.PrimarySerial != nil && *st.PrimarySerial == 5
	})
	if st.AppliedSerial == nil {
		t.Error("no applied serial after an older full zone, want the 3 held")
	} else if *st.AppliedSerial != 3 {
		t.Errorf("applied serial %d after an older full zone, want the 3 held", *st.AppliedSerial)
	}
	if st.Failures == 0 || !strings.Contains(st.LastError, "its transfer brought serial 2, not newer than the 3 held") {
		t.Errorf("status %d failures, last error %q: want the check failed, naming the serials", st.Failures, st.LastError)
	}
	waitSerial(t, be, "example.com.", 3)
}

// notify_delay holds a NOTIFY's check for the delay, and NOTIFYs meanwhile fold into it;
// a CREATE does not wait for it (it would spend its create_timeout).
func TestNotifyDelayDebouncesNotifiesOnly(t *testing.T) {
	const delay = 2 * time.Second
	p := startPrimary(t, "example.com.", 3, 10)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, NotifyDelay: delay}, memory.New())
	start := time.Now()
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("CREATE took %v: it waited for notify_delay (%v)", took, delay)
	}

	p.setZone(4, 10)
	notified := time.Now()
	for range 20 {
		if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(delay / 2)
	if n := p.soas.Load(); n != 0 {
		t.Errorf("%d SOA queries within notify_delay of the NOTIFYs, want none yet", n)
	}
	waitApplied(t, m, be, "example.com.", 4)
	if took := time.Since(notified); took < delay {
		t.Errorf("serial 4 applied %v after the NOTIFYs, before notify_delay (%v)", took, delay)
	}
	if n := p.transfers(); n != 2 {
		t.Errorf("%d transfers for the CREATE and 20 NOTIFYs within notify_delay, want 2", n)
	}
}

// An IXFR step that adds an SOA below the apex fails the check, and the zone keeps its
// version: written out, the second SOA would make the zone file fail to load.
func TestIXFRWithSOABelowApexKeepsTheZone(t *testing.T) {
	p, m, be := startCreated(t, 1, 10)
	soa := dns.Copy(p.records[0]).(*dns.SOA)
	soa.Hdr.Name, soa.Serial = "sub.example.com.", 9
	p.set(func(p *fakePrimary) {
		p.records = append(backendtest.Zone(p.zone, 2, 10), soa)
		p.versions = append(p.versions, p.records)
	})
	if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
		t.Fatal(err)
	}
	var st Status
	waitCheck(t, m, func() string { return fmt.Sprintf("status %+v, want the check failed on the SOA", st) }, func() bool {
		st, _ = m.Status("example.com.")
		return strings.Contains(st.LastError, "SOA record below the apex")
	})
	if p.ixfrs.Load() == 0 {
		t.Error("no IXFR was asked for: the test did not reach the IXFR path")
	}
	waitSerial(t, be, "example.com.", 1)
}

// flakySerial is a memory backend whose Serial fails while fail is set, as a database
// that hiccups or a named that times out an SOA query while it reloads.
type flakySerial struct {
	*memory.Backend
	fail atomic.Bool
}

func (f *flakySerial) Serial(ctx context.Context, zone string) (uint32, error) {
	if f.fail.Load() {
		return 0, errors.New("backend hiccup")
	}
	return f.Backend.Serial(ctx, zone)
}

// A check the backend could not tell its serial for fails, and the zone's status keeps
// the serial last seen: it is not "applied serial 0".
func TestBackendHiccupKeepsAppliedSerial(t *testing.T) {
	p := startPrimary(t, "example.com.", 5, 10)
	be := &flakySerial{Backend: memory.New()}
	m := newManagerOn(t, Config{Masters: []netip.AddrPort{p.addr}}, be)
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	be.fail.Store(true)
	if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
		t.Fatal(err)
	}
	var st Status
	waitCheck(t, m, func() string { return fmt.Sprintf("status %+v, want the failed check recorded", st) }, func() bool {
		st, _ = m.Status("example.com.")
		return strings.Contains(st.LastError, "backend hiccup")
	})
	if st.AppliedSerial == nil || *st.AppliedSerial != 5 {
		t.Errorf("applied serial %s after a check the backend failed, want the 5 it held", fmtSerial(st.AppliedSerial))
	}
}

func fmtSerial(p *uint32) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

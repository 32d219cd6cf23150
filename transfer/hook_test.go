package transfer

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/memory"
)

// checkLog records OnChecked calls.
type checkLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *checkLog) hook(zone string, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := zone + " unchanged"
	if changed {
		s = zone + " changed"
	}
	l.calls = append(l.calls, s)
}

// wait waits until OnChecked was called since the last take. OnChecked runs before the
// manager signals the check, so waiting for the signal alone could see the recorded
// status before the call.
func (l *checkLog) wait(t *testing.T, m *Manager) {
	t.Helper()
	waitCheck(t, m, func() string { return "OnChecked not called" }, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.calls) > 0
	})
}

func (l *checkLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	return c
}

// OnChecked reports every successful check, and only successful ones, saying whether it
// changed the zone; it has run by the time a CREATE returns.
func TestOnCheckedReportsSuccessfulChecks(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 10)
	var log checkLog
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, OnChecked: log.hook}, memory.New())
	ctx := context.Background()

	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 1 || got[0] != "example.com. changed" {
		t.Fatalf("after CREATE: calls %v, want one change", got)
	}

	m.Notify(ctx, "example.com.", Notify{}) // same serial at the primary
	log.wait(t, m)
	if got := log.take(); len(got) != 1 || got[0] != "example.com. unchanged" {
		t.Fatalf("after a check finding the same serial: calls %v, want one unchanged", got)
	}

	p.setZone(2, 12)
	m.Notify(ctx, "example.com.", Notify{Serial: 2, HasSerial: true})
	waitApplied(t, m, be, "example.com.", 2)
	log.wait(t, m)
	if got := log.take(); len(got) != 1 || got[0] != "example.com. changed" {
		t.Fatalf("after a new version: calls %v, want one change", got)
	}

	p.set(func(p *fakePrimary) { p.down = true })
	p.setZone(3, 12)
	m.Notify(ctx, "example.com.", Notify{})
	waitCheck(t, m, func() string { return "the check with the primary down did not fail" }, func() bool {
		st, _ := m.Status("example.com.")
		return st.Failures > 0
	})
	if got := log.take(); len(got) != 0 {
		t.Fatalf("after a failed check: calls %v, want none", got)
	}

	failed, _ := newManagerWith(t, Config{Masters: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}, OnChecked: log.hook}, memory.New())
	if err := failed.Create(ctx, "other.com."); err == nil {
		t.Fatal("CREATE without a master succeeded")
	}
	if got := log.take(); len(got) != 0 {
		t.Fatalf("after a failed CREATE: calls %v, want none", got)
	}
}

// By the time OnChecked is called, the zone's status shows that check: a catalog consumer
// or a test woken by the hook reads the new serial and transfer, not the previous ones.
func TestOnCheckedSeesTheCheckInStatus(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 10)
	var (
		m    *Manager
		seen = make(chan Status, 4)
	)
	m, _ = newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, OnChecked: func(zone string, changed bool) {
		st, _ := m.Status(zone)
		seen <- st
	}}, memory.New())
	ctx := context.Background()
	next := func(what string) Status {
		t.Helper()
		select {
		case st := <-seen:
			return st
		case <-time.After(eventuallyWithin):
			t.Fatalf("%s: OnChecked not called within %v", what, eventuallyWithin)
			return Status{}
		}
	}
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	if st := next("CREATE"); st.AppliedSerial == nil || *st.AppliedSerial != 1 || st.LastTransfer == nil || st.LastTransfer.To != 1 {
		t.Errorf("status seen by OnChecked after the CREATE: %+v, want serial 1 applied by a transfer to 1", st)
	}
	p.set(func(p *fakePrimary) { p.down = true })
	m.Notify(ctx, "example.com.", Notify{})
	waitCheck(t, m, func() string { return "the check with the primary down did not fail" }, func() bool {
		st, _ := m.Status("example.com.")
		return st.Failures > 0
	})
	p.set(func(p *fakePrimary) { p.down = false })
	p.setZone(2, 12)
	m.Notify(ctx, "example.com.", Notify{Serial: 2, HasSerial: true})
	st := next("NOTIFY")
	if st.AppliedSerial == nil || *st.AppliedSerial != 2 || st.LastTransfer == nil || st.LastTransfer.To != 2 || st.Failures != 0 {
		t.Errorf("status seen by OnChecked after the new version: %+v, want serial 2 applied by a transfer to 2, no failures", st)
	}
}

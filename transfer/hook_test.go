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
	waitIdle(t, m, "example.com.")
	if got := log.take(); len(got) != 1 || got[0] != "example.com. unchanged" {
		t.Fatalf("after a check finding the same serial: calls %v, want one unchanged", got)
	}

	p.setZone(2, 12)
	m.Notify(ctx, "example.com.", Notify{Serial: 2, HasSerial: true})
	waitSerial(t, be, "example.com.", 2)
	waitIdle(t, m, "example.com.")
	if got := log.take(); len(got) != 1 || got[0] != "example.com. changed" {
		t.Fatalf("after a new version: calls %v, want one change", got)
	}

	p.set(func(p *fakePrimary) { p.down = true })
	p.setZone(3, 12)
	m.Notify(ctx, "example.com.", Notify{})
	waitIdle(t, m, "example.com.")
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

// waitIdle waits until the zone has no job queued or running.
func waitIdle(t *testing.T, m *Manager, zone string) {
	t.Helper()
	for range 300 {
		if st, ok := m.Status(zone); ok && st.State != "queued" && st.State != "transferring" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("zone %s still busy", zone)
}

package transfer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dnsagent/dnsagent/backend/memory"
)

// slowDelete is a backend whose Delete says it started, then waits for gate: nil lets it
// delete, an error fails it (a database that went away) and keeps the zone.
type slowDelete struct {
	*memory.Backend
	started chan struct{}
	gate    chan error
}

func (s *slowDelete) Delete(ctx context.Context, zone string) error {
	s.started <- struct{}{}
	if err := <-s.gate; err != nil {
		return err
	}
	return s.Backend.Delete(ctx, zone)
}

// startSlowDelete creates example.com. (serial 3) from a primary through a backend whose
// DELETE waits, starts a DELETE and returns once it is in the backend. refresh is
// refresh_interval (0: the SOA's).
func startSlowDelete(t *testing.T, refresh time.Duration) (*fakePrimary, *Manager, *slowDelete, chan error) {
	t.Helper()
	p := startPrimary(t, "example.com.", 3, 10)
	be := &slowDelete{Backend: memory.New(), started: make(chan struct{}, 1), gate: make(chan error, 1)}
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 2, DialTimeout: time.Second,
		StallTimeout: 2 * time.Second, RetryMin: time.Minute, RefreshInterval: refresh}, be, zap.NewNop())
	t.Cleanup(m.Close)
	if err := m.Create(context.Background(), "example.com."); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() { deleted <- m.Delete(context.Background(), "example.com.") }()
	select {
	case <-be.started:
	case <-time.After(eventuallyWithin):
		t.Fatal("the DELETE did not reach the backend")
	}
	return p, m, be, deleted
}

// A CREATE that arrives while a DELETE of its zone is still under way (Designate deleted
// the zone and a tenant made it again) must not be answered from the zone about to go:
// it waits for the DELETE, then pulls the zone anew, and the zone is held afterwards.
func TestCreateDuringDeleteRecreates(t *testing.T) {
	p, m, be, deleted := startSlowDelete(t, 0)
	created := make(chan error, 1)
	go func() { created <- m.Create(context.Background(), "example.com.") }()
	select {
	case err := <-created:
		t.Fatalf("the CREATE was answered (%v) while the DELETE was still removing the zone", err)
	case <-time.After(200 * time.Millisecond):
	}
	be.gate <- nil
	if err := outcomeOf(t, deleted); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	if err := outcomeOf(t, created); err != nil {
		t.Fatalf("CREATE after the DELETE: %v", err)
	}
	if serial, err := be.Serial(context.Background(), "example.com."); err != nil || serial != 3 {
		t.Fatalf("after DELETE then CREATE: serial %d, %v; want the zone held at 3", serial, err)
	}
	if n := p.axfrs.Load(); n != 2 {
		t.Errorf("%d AXFRs, want two: the first CREATE's and the second's", n)
	}
}

// A DELETE the backend fails keeps the zone held, and so looked after: its refresh is
// armed again (the primary sees SOA queries for it), and a NOTIFY still reaches it.
func TestFailedDeleteKeepsTheZoneChecked(t *testing.T) {
	p, m, be, deleted := startSlowDelete(t, 100*time.Millisecond)
	be.gate <- errors.New("database went away")
	if err := outcomeOf(t, deleted); err == nil {
		t.Fatal("DELETE answered as a success although the backend failed it")
	}
	before := p.soas.Load()
	eventually(t, func() string { return "no refresh of the zone after the failed DELETE" },
		func() bool { return p.soas.Load() > before })
	if err := m.Notify(context.Background(), "example.com.", Notify{}); err != nil {
		t.Errorf("NOTIFY after the failed DELETE: %v", err)
	}
}

// panicDelete is a backend whose first Delete panics (a bug in a backend plugin).
type panicDelete struct {
	*memory.Backend
	panicked bool
}

func (p *panicDelete) Delete(ctx context.Context, zone string) error {
	if !p.panicked {
		p.panicked = true
		panic("backend bug")
	}
	return p.Backend.Delete(ctx, zone)
}

// A DELETE whose backend panics (the request chain's Recover answers SERVFAIL) leaves
// nothing locked: the zone is still held and refreshed, the delete's work is over (the
// agent goes back to one thread while idle), and the next DELETE and CREATE of it go
// through instead of waiting for a delete that never ends.
func TestDeleteThatPanicsReleasesTheZone(t *testing.T) {
	p := startPrimary(t, "example.com.", 3, 10)
	be := &panicDelete{Backend: memory.New()}
	var running atomic.Int32
	working := func() func() {
		running.Add(1)
		return func() { running.Add(-1) }
	}
	m := newManagerOn(t, Config{Masters: []netip.AddrPort{p.addr}, RefreshInterval: 100 * time.Millisecond, Working: working}, be)
	ctx, cancel := context.WithTimeout(context.Background(), eventuallyWithin)
	defer cancel()
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the backend's panic did not reach the caller")
			}
		}()
		m.Delete(ctx, "example.com.")
	}()
	// Refreshes come and go every 100 ms; the DELETE's own work must not stay counted.
	eventually(t, func() string {
		return fmt.Sprintf("%d pieces of zone work still running after the DELETE that panicked", running.Load())
	}, func() bool { return running.Load() == 0 })
	before := p.soas.Load()
	eventually(t, func() string { return "no refresh of the zone after the DELETE that panicked" },
		func() bool { return p.soas.Load() > before })
	if err := m.Delete(ctx, "example.com."); err != nil {
		t.Fatalf("DELETE after the one that panicked: %v", err)
	}
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatalf("CREATE after the DELETEs: %v", err)
	}
	if serial, err := be.Serial(ctx, "example.com."); err != nil || serial != 3 {
		t.Fatalf("after the CREATE: serial %d, %v; want the zone held at 3", serial, err)
	}
}

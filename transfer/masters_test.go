package transfer

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/memory"
)

// Issue 12, item 2: a NOTIFY must never end "up to date" while a master that answered has
// a newer serial.

// 2a: a master still backing off after a failure is asked anyway when a NOTIFY comes, and
// its newer version is transferred.
func TestNotifyAsksMasterInBackoff(t *testing.T) {
	ctx := context.Background()
	stale := startPrimary(t, "example.com.", 1, 10)
	back := startPrimary(t, "example.com.", 1, 10)
	back.set(func(p *fakePrimary) { p.down = true })
	m, be := newManager(t, stale.addr, back.addr)
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	if asked := m.mastersToAsk(true); len(asked) != 1 || asked[0].addr != stale.addr {
		t.Fatalf("a refresh would ask %v; the master that was down must be backing off", asked)
	}
	back.set(func(p *fakePrimary) { p.down = false })
	back.setZone(2, 10) // back ahead of the other master, within its 5 s backoff
	if err := m.Notify(ctx, "example.com.", Notify{Source: netip.MustParseAddr("192.0.2.53")}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 2)
	if back.transfers() != 1 {
		t.Errorf("%d transfers from the master that came back, want 1", back.transfers())
	}
}

// A retry after a failed check asks every master too: the master whose transfer failed is
// backing off, and skipping it would let the retry find the others "up to date" and wait
// for the SOA refresh.
func TestRetryAsksMasterInBackoff(t *testing.T) {
	ctx := context.Background()
	stale := startPrimary(t, "example.com.", 1, 200)
	fresh := startPrimaryOn(t, "127.0.0.2", "example.com.", 1, 200)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{stale.addr, fresh.addr}, RetryMin: 200 * time.Millisecond}, memory.New())
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	fresh.set(func(p *fakePrimary) { p.cut, p.ixfr = true, "cut" })
	fresh.setZone(2, 200)
	axfrs := fresh.axfrs.Load() // the CREATE's, if it went there
	if err := m.Notify(ctx, "example.com.", Notify{Source: fresh.addr.Addr()}); err != nil {
		t.Fatal(err)
	}
	// IXFR cut, then AXFR cut: the check fails.
	eventually(t, func() string { return "no AXFR from the master whose IXFR was cut" },
		func() bool { return fresh.axfrs.Load() != axfrs })
	fresh.set(func(p *fakePrimary) { p.cut, p.ixfr = false, "" })
	waitApplied(t, m, be, "example.com.", 2)
}

// The master with the newest version fails its transfers while another, with a version
// between ours and the newest, works: that version is applied, and the newest is tried
// again at the retry delay, not one SOA refresh later.
func TestBestMasterFailingIsRetriedAfterOlderVersionApplied(t *testing.T) {
	ctx := context.Background()
	best := startPrimary(t, "example.com.", 1, 200)
	older := startPrimaryOn(t, "127.0.0.2", "example.com.", 1, 200)
	m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{best.addr, older.addr}, RetryMin: 200 * time.Millisecond}, memory.New())
	m.client.StallTimeout = 300 * time.Millisecond
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	best.set(func(p *fakePrimary) { p.hold = hold })
	best.setZone(2, 200)
	best.setZone(3, 200)
	older.setZone(2, 200)
	if err := m.Notify(ctx, "example.com.", Notify{}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 2)
	best.set(func(p *fakePrimary) { p.hold = nil })
	close(hold)
	waitApplied(t, m, be, "example.com.", 3)
}

// 2b: several masters on the NOTIFY sender's address (different ports): the first one to
// answer does not win when another there has a newer serial.
func TestNotifyWaitsForEveryMasterOnSendersAddress(t *testing.T) {
	ctx := context.Background()
	old := startPrimary(t, "example.com.", 1, 10)
	fresh := startPrimary(t, "example.com.", 1, 10)
	m, be := newManager(t, old.addr, fresh.addr)
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	fresh.setZone(2, 10)
	// old answers first; fresh still within the 250 ms answer grace on a loaded machine
	fresh.set(func(p *fakePrimary) { p.soaDelay = 30 * time.Millisecond })
	if err := m.Notify(ctx, "example.com.", Notify{Source: netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 2)
}

// The NOTIFY's sender answers its SOA after another master. 2c: it has only the serial
// already held, the other a newer one: the newer one is transferred. And when it is the
// one with the newer version, answering well past the 250 ms grace the other's answer
// started, it is still waited for, rather than the check ending "up to date" on the
// other's serial (the NOTIFY would then be lost until the next refresh).
func TestNotifierAnsweringLate(t *testing.T) {
	for _, c := range []struct {
		name          string
		notifierNewer bool
		delay         time.Duration
	}{
		{"not newer, another master newer", false, 100 * time.Millisecond},
		{"newer, past the grace", true, 4 * masterAnswerGrace},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			notifier := startPrimary(t, "example.com.", 1, 10)
			other := startPrimaryOn(t, "127.0.0.2", "example.com.", 1, 10)
			m, be := newManager(t, notifier.addr, other.addr)
			if err := m.Create(ctx, "example.com."); err != nil {
				t.Fatal(err)
			}
			newer := other
			if c.notifierNewer {
				newer = notifier
			}
			newer.setZone(2, 10)
			notifier.set(func(p *fakePrimary) { p.soaDelay = c.delay })
			if err := m.Notify(ctx, "example.com.", Notify{Source: notifier.addr.Addr()}); err != nil {
				t.Fatal(err)
			}
			waitApplied(t, m, be, "example.com.", 2)
			if newer.ixfrs.Load() != 1 {
				t.Errorf("%d IXFRs from the master with the newer serial, want 1", newer.ixfrs.Load())
			}
		})
	}
}

// Item 3: a master that hangs mid-IXFR costs one stall timeout: the next master with the
// same version is asked before the hung one's AXFR, which is never tried. The hung master
// comes first either as the NOTIFY's sender or, with the NOTIFY from elsewhere, by the
// configured order. Neither master delays its SOA answer: one arriving more than
// masterAnswerGrace after the other's (a 50 ms delay on a loaded machine can) would
// leave the good master out of the check altogether.
func TestHungIXFRFallsBackToAnotherMasterFirst(t *testing.T) {
	for _, fromHung := range []bool{true, false} {
		name := map[bool]string{true: "notify-from-hung-master", false: "notify-from-elsewhere"}[fromHung]
		t.Run(name, func(t *testing.T) { testHungIXFR(t, fromHung) })
	}
}

func testHungIXFR(t *testing.T, fromHung bool) {
	const stall = time.Second
	ctx := context.Background()
	hung := startPrimary(t, "example.com.", 1, 200)
	good := startPrimaryOn(t, "127.0.0.2", "example.com.", 1, 200)
	m, be := newManager(t, hung.addr, good.addr)
	m.client.StallTimeout = stall
	if err := m.Create(ctx, "example.com."); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	defer close(hold)
	hung.set(func(p *fakePrimary) { p.hold, p.ixfr = hold, "stall" }) // AXFRs hang from the start
	hung.setZone(2, 200)
	good.setZone(2, 200)
	axfrs := hung.axfrs.Load() // the CREATE's, if it went there
	n := Notify{Source: netip.MustParseAddr("192.0.2.53")}
	if fromHung {
		n.Source = hung.addr.Addr()
	}
	start := time.Now()
	if err := m.Notify(ctx, "example.com.", n); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, be, "example.com.", 2) // recorded in Status, read below
	took := time.Since(start)
	// The hung IXFR costs one stall; anything that waited out a second one (the hung
	// master's AXFR, a retry) takes 2 s at least. What is left, up to 1 s, is slack for a
	// loaded machine.
	if took < stall || took >= 2*stall {
		t.Errorf("new version applied %v after the NOTIFY, want one stall timeout (%v), not two", took, stall)
	}
	if hung.ixfrs.Load() != 1 || hung.axfrs.Load() != axfrs {
		t.Errorf("hung master: %d IXFRs, %d AXFRs after the NOTIFY; want only the one IXFR that hung",
			hung.ixfrs.Load(), hung.axfrs.Load()-axfrs)
	}
	st, _ := m.Status("example.com.")
	if last := st.LastTransfer; last == nil || last.Master != good.addr.String() || last.Type != "IXFR" {
		t.Errorf("last transfer %+v, want an IXFR from %s", st.LastTransfer, good.addr)
	}
}

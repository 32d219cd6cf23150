package catalog

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/transfer"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const catA, catB = "cat-a.test.", "cat-b.test."

// env is a primary, the main transfer engine on a memory backend, and a consumer.
type env struct {
	t    *testing.T
	p    *testPrimary
	be   *memory.Backend
	main *transfer.Manager
	c    *Consumer
	logs *observer.ObservedLogs
	cfg  Config
}

func startEnv(t *testing.T, p *testPrimary, be *memory.Backend, cfg Config) *env {
	t.Helper()
	if cfg.StateFile == "" {
		cfg.StateFile = filepath.Join(t.TempDir(), "catalogs.json")
	}
	if cfg.MaxRemoval == 0 {
		cfg.MaxRemoval = DefaultMaxRemoval
	}
	tcfg := transfer.Config{Masters: []netip.AddrPort{p.addr}, Workers: 4, DialTimeout: time.Second,
		StallTimeout: 2 * time.Second, RetryMin: 50 * time.Millisecond, RefreshInterval: time.Hour}
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	e := &env{t: t, p: p, be: be, logs: logs, cfg: cfg}
	e.main = transfer.NewManager(tcfg, be, log.Named("main"))
	t.Cleanup(e.main.Close)
	e.c = New(cfg, tcfg, e.main, be, log.Named("catalog"))
	t.Cleanup(e.c.Close)
	if err := e.c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// stop ends the consumer and the main engine, as an agent stopping would.
func (e *env) stop() {
	e.c.Close()
	e.main.Close()
}

func (e *env) notify(zone string) error {
	return e.c.Router().Notify(context.Background(), zone, transfer.Notify{})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitZones waits until the backend holds exactly zones.
func (e *env) waitZones(zones ...string) {
	e.t.Helper()
	slices.Sort(zones)
	var got []string
	waitFor(e.t, fmt.Sprintf("zones %v", zones), func() bool {
		got, _ = e.be.Zones(context.Background())
		return slices.Equal(got, zones)
	})
}

func (e *env) status(catalog string) Detail {
	e.t.Helper()
	d, ok := e.c.Status(catalog)
	if !ok {
		e.t.Fatalf("no status for %s", catalog)
	}
	return d
}

// waitApplied waits until the version with serial is applied and nothing is in flight.
func (e *env) waitApplied(catalog string, serial uint32) Detail {
	e.t.Helper()
	var d Detail
	waitFor(e.t, fmt.Sprintf("%s serial %d applied", catalog, serial), func() bool {
		d = e.status(catalog)
		return d.Serial != nil && *d.Serial == serial
	})
	return d
}

// publish serves a new catalog version and NOTIFYs the agent of it.
func (e *env) publish(catalog string, serial uint32, version string, members map[string]string, extra ...string) {
	e.t.Helper()
	e.p.setZone(catalog, catalogRRs(e.t, catalog, serial, version, members, extra...))
	if err := e.notify(catalog); err != nil {
		e.t.Fatalf("NOTIFY %s: %v", catalog, err)
	}
}

func (e *env) logged(msg, zone string) bool {
	for _, entry := range e.logs.FilterMessageSnippet(msg).All() {
		if zone == "" || entry.ContextMap()["zone"] == zone {
			return true
		}
	}
	return false
}

// members maps label lN to zone zN.test. for each name given.
func members(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m["l"+n] = n + ".test."
	}
	return m
}

func zones(names ...string) []string {
	var z []string
	for _, n := range names {
		z = append(z, n+".test.")
	}
	return z
}

func primaryWith(t *testing.T, memberNames ...string) *testPrimary {
	p := startTestPrimary(t)
	for _, n := range memberNames {
		p.member(n+".test.", 1)
	}
	return p
}

func TestConsumerCreatesDeletesAndResetsMembers(t *testing.T) {
	p := primaryWith(t, "a", "b", "c", "d", "e", "f")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("a", "b", "c", "d", "e")))
	e := startEnv(t, p, memory.New(), Config{Zones: []string{catA}})
	e.waitZones(zones("a", "b", "c", "d", "e")...)
	d := e.waitApplied(catA, 1)
	if d.Members != 5 || d.Owned != 5 || d.Broken {
		t.Errorf("status %+v, want 5 members, 5 owned, not broken", d.Status)
	}
	state, err := loadState(e.cfg.StateFile)
	if err != nil || len(state) != 5 || state["a.test."] != (owner{catA, "la"}) {
		t.Fatalf("state file: %v, %v; want 5 zones owned by %s", state, err, catA)
	}

	// Remove e, add f, give d a new unique label, put a in a group.
	next := members("a", "b", "c", "f")
	next["new-d"] = "d.test."
	e.publish(catA, 2, "2", next, `group.la.zones 0 IN TXT "blue"`)
	d = e.waitApplied(catA, 2)
	e.waitZones(zones("a", "b", "c", "d", "f")...)
	if !e.logged("member zone re-created", "d.test.") || !e.logged("member zone deleted", "e.test.") || !e.logged("member zone created", "f.test.") {
		t.Error("the log does not tell that d was re-created, e deleted and f created")
	}
	if d.Groups["blue"] != 1 || d.LastChange.IsZero() || d.Members != 5 || d.Owned != 5 {
		t.Errorf("status %+v, want group blue with one member, a last change, 5 members owned", d.Status)
	}
	if state, _ := loadState(e.cfg.StateFile); state["d.test."].Label != "new-d" || len(state) != 5 {
		t.Errorf("state after the change: %v", state)
	}
}

func TestConsumerBrokenCatalogChangesNothing(t *testing.T) {
	p := primaryWith(t, "a", "b")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("a", "b")))
	e := startEnv(t, p, memory.New(), Config{Zones: []string{catA}})
	e.waitApplied(catA, 1)
	e.waitZones(zones("a", "b")...)

	for _, tc := range []struct {
		serial  uint32
		version string
		members map[string]string
		reason  string
	}{
		{2, "2", map[string]string{"one": "a.test.", "two": "a.test."}, "listed under two unique labels"},
		{3, "1", map[string]string{"la": "a.test."}, `schema version "1" is not supported`},
	} {
		serial := tc.serial
		e.publish(catA, serial, tc.version, tc.members)
		waitFor(t, fmt.Sprintf("serial %d reported broken", serial), func() bool {
			d := e.status(catA)
			return d.Broken && d.BrokenSerial != nil && *d.BrokenSerial == serial
		})
		d := e.status(catA)
		if !strings.Contains(d.BrokenReason, tc.reason) || *d.Serial != 1 {
			t.Errorf("serial %d: broken because %q, applied serial %d; want %q and serial 1 kept", serial, d.BrokenReason, *d.Serial, tc.reason)
		}
		e.waitZones(zones("a", "b")...)
	}
	if !e.logged("catalog is broken", "") {
		t.Error("the broken catalog was not logged")
	}

	// A valid version again: applied, and no longer broken.
	e.publish(catA, 4, "2", members("a", "b", "c"))
	p.member("c.test.", 1)
	e.notify(catA)
	e.waitZones(zones("a", "b", "c")...)
	if d := e.waitApplied(catA, 4); d.Broken {
		t.Errorf("still reported broken after a valid version: %+v", d.Status)
	}
}

// Acceptance 3: a zone created by opcode 14 is never deleted by a catalog change.
func TestConsumerLeavesZonesItDidNotCreate(t *testing.T) {
	p := primaryWith(t, "a", "b", "x")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("a", "b")))
	be := memory.New()
	e := startEnv(t, p, be, Config{Zones: []string{catA}})
	e.waitApplied(catA, 1)
	if err := e.c.Router().Create(context.Background(), "x.test."); err != nil { // opcode 14
		t.Fatal(err)
	}
	e.publish(catA, 2, "2", members("a", "b", "x"))
	d := e.waitApplied(catA, 2)
	if d.Ignored["x.test."] == "" || d.Owned != 2 {
		t.Errorf("status %+v: want x ignored (created by opcode 14) and 2 zones owned", d.Status)
	}
	if !e.logged("member zone ignored", "x.test.") {
		t.Error("no warning about the ignored member")
	}
	e.publish(catA, 3, "2", members("a", "b"))
	e.waitApplied(catA, 3)
	e.waitZones(zones("a", "b", "x")...)
}

func TestConsumerMassRemovalGuard(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, confirm := range []bool{false, true} {
		t.Run(fmt.Sprintf("catalog_confirm_removal=%v", confirm), func(t *testing.T) {
			p := primaryWith(t, names...)
			p.setZone(catA, catalogRRs(t, catA, 1, "2", members(names...)))
			e := startEnv(t, p, memory.New(), Config{Zones: []string{catA}, ConfirmRemoval: confirm})
			e.waitApplied(catA, 1)
			e.waitZones(zones(names...)...)

			e.publish(catA, 2, "2", members("a"))
			if confirm {
				e.waitApplied(catA, 2)
				e.waitZones("a.test.")
				return
			}
			waitFor(t, "the removal held back", func() bool { return e.status(catA).PendingRemoval != nil })
			d := e.status(catA)
			if pr := d.PendingRemoval; pr.Serial != 2 || pr.Removes != 9 || pr.Of != 10 || *d.Serial != 1 {
				t.Errorf("pending %+v, applied %d; want serial 2 removing 9 of 10, serial 1 kept", pr, *d.Serial)
			}
			e.waitZones(zones(names...)...)
			if !e.logged("catalog version held back", "") {
				t.Error("the held removal was not logged")
			}
			// A later check finding the same serial confirms it.
			if err := e.notify(catA); err != nil {
				t.Fatal(err)
			}
			e.waitApplied(catA, 2)
			e.waitZones("a.test.")
			if d := e.status(catA); d.PendingRemoval != nil {
				t.Errorf("still pending after it was applied: %+v", d.PendingRemoval)
			}
		})
	}
}

// A newer version that removes less replaces a held one.
func TestConsumerHeldRemovalReplacedByNewerVersion(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	p := primaryWith(t, names...)
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members(names...)))
	e := startEnv(t, p, memory.New(), Config{Zones: []string{catA}})
	e.waitApplied(catA, 1)
	e.publish(catA, 2, "2", members("a"))
	waitFor(t, "the removal held back", func() bool { return e.status(catA).PendingRemoval != nil })
	e.publish(catA, 3, "2", members("a", "b", "c"))
	if d := e.waitApplied(catA, 3); d.PendingRemoval != nil {
		t.Errorf("pending %+v after a newer acceptable version", d.PendingRemoval)
	}
	e.waitZones(zones("a", "b", "c")...)
}

// startTwoCatalogs starts catalog A listing x and a1, and catalog B listing b1, both
// applied.
func startTwoCatalogs(t *testing.T) *env {
	t.Helper()
	p := primaryWith(t, "x", "a1", "b1")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("x", "a1")))
	p.setZone(catB, catalogRRs(t, catB, 1, "2", members("b1")))
	e := startEnv(t, p, memory.New(), Config{Zones: []string{catA, catB}})
	e.waitApplied(catA, 1)
	e.waitApplied(catB, 1)
	return e
}

func TestConsumerChangeOfOwnership(t *testing.T) {
	e := startTwoCatalogs(t)
	e.waitZones(zones("a1", "b1", "x")...)

	// B lists x too: A owns it, so B leaves it alone.
	e.publish(catB, 2, "2", members("b1", "x"))
	if d := e.waitApplied(catB, 2); d.Ignored["x.test."] == "" {
		t.Fatalf("B took x without a coo: %+v", d.Status)
	}
	// A's coo hands x to B.
	e.publish(catA, 2, "2", members("x", "a1"), "coo.lx.zones 0 IN PTR "+catB)
	e.waitApplied(catA, 2)
	waitFor(t, "x owned by B", func() bool {
		st, _ := loadState(e.cfg.StateFile)
		return st["x.test."].Catalog == catB
	})
	// A drops x: not deleted, B owns it now.
	e.publish(catA, 3, "2", members("a1"))
	e.waitApplied(catA, 3)
	e.waitZones(zones("a1", "b1", "x")...)
	if d := e.waitApplied(catB, 2); d.Owned != 2 || d.Ignored["x.test."] != "" {
		t.Errorf("B after the hand-over: %+v, want x and b1 owned", d.Status)
	}
	// B drops x: deleted.
	e.publish(catB, 3, "2", members("b1"))
	e.waitApplied(catB, 3)
	e.waitZones(zones("a1", "b1")...)
}

// A zone moved between catalogs without coo: B lists it while A owns it (B leaves it
// alone), then A drops it. A deletes it, and B, which still lists it, takes it up at
// once, without a new version of its own: the zone is served again, owned by B.
func TestConsumerMoveWithoutCOO(t *testing.T) {
	e := startTwoCatalogs(t)
	e.publish(catB, 2, "2", members("b1", "x"))
	if d := e.waitApplied(catB, 2); d.Ignored["x.test."] == "" {
		t.Fatalf("B took x from A without a coo: %+v", d.Status)
	}
	e.publish(catA, 2, "2", members("a1"))
	e.waitApplied(catA, 2)
	waitFor(t, "x created again and owned by B", func() bool {
		st, _ := loadState(e.cfg.StateFile)
		held, _ := e.be.Zones(context.Background())
		return st["x.test."].Catalog == catB && slices.Contains(held, "x.test.")
	})
	if d := e.status(catB); d.Owned != 2 || d.Ignored["x.test."] != "" {
		t.Errorf("B after A dropped x: %+v, want x and b1 owned, nothing ignored", d.Status)
	}
}

// Issue 12 item 6: two catalogs whose coos point at each other do not hand the member
// back and forth: the owner keeps it, the state file is written no more, and the loop is
// logged once.
func TestConsumerCOOLoopIsNotFollowed(t *testing.T) {
	p := primaryWith(t, "x", "a1", "b1")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("x", "a1")))
	p.setZone(catB, catalogRRs(t, catB, 1, "2", members("b1")))
	e := startEnv(t, p, memory.New(), Config{Zones: []string{catA, catB}})
	e.waitApplied(catA, 1)
	e.waitApplied(catB, 1)
	e.waitZones(zones("a1", "b1", "x")...)
	owner := func() string {
		st, _ := loadState(e.cfg.StateFile)
		return st["x.test."].Catalog
	}
	first := owner()
	if first != catA {
		t.Fatalf("x is owned by %q, want %s, the only catalog listing it", first, catA)
	}

	// B lists x with a coo naming A (A owns it: nothing to hand over), then A's coo names B.
	e.publish(catB, 2, "2", members("b1", "x"), "coo.lx.zones 0 IN PTR "+catA)
	e.waitApplied(catB, 2)
	e.publish(catA, 2, "2", members("x", "a1"), "coo.lx.zones 0 IN PTR "+catB)
	e.waitApplied(catA, 2)
	time.Sleep(200 * time.Millisecond)
	info, err := os.Stat(e.cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	handOffs := e.logs.FilterMessageSnippet("handed over").Len()
	time.Sleep(time.Second)

	if now := owner(); now != first {
		t.Errorf("x is owned by %s, was %s: ownership must stay put", now, first)
	}
	if n := e.logs.FilterMessageSnippet("handed over").Len(); n != handOffs || n > 1 {
		t.Errorf("%d hand-overs logged (%d a second earlier): x goes round the loop", n, handOffs)
	}
	if later, err := os.Stat(e.cfg.StateFile); err != nil || !later.ModTime().Equal(info.ModTime()) {
		t.Errorf("the state file was rewritten (%v, %v): x goes round the loop", later.ModTime(), err)
	}
	if n := e.logs.FilterMessageSnippet("coo loop").Len(); n != 1 {
		t.Errorf("the coo loop was logged %d times, want once", n)
	}
	e.waitZones(zones("a1", "b1", "x")...)
}

func TestConsumerOwnershipSurvivesRestart(t *testing.T) {
	p := primaryWith(t, "a", "b", "c")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("a", "b", "c")))
	be := memory.New()
	e := startEnv(t, p, be, Config{Zones: []string{catA}})
	e.waitApplied(catA, 1)
	e.waitZones(zones("a", "b", "c")...)
	e.stop()

	// While the agent was down: c left the catalog and a vanished from the backend.
	be.Delete(context.Background(), "a.test.")
	p.setZone(catA, catalogRRs(t, catA, 2, "2", members("a", "b")))
	e2 := startEnv(t, p, be, Config{Zones: []string{catA}, StateFile: e.cfg.StateFile})
	e2.waitApplied(catA, 2)
	e2.waitZones(zones("a", "b")...)
}

func TestConsumerReleasesCatalogsNoLongerConsumed(t *testing.T) {
	p := primaryWith(t, "a", "b")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("a", "b")))
	p.setZone(catB, catalogRRs(t, catB, 1, "2", members("b")))
	be := memory.New()
	e := startEnv(t, p, be, Config{Zones: []string{catA}})
	e.waitApplied(catA, 1)
	e.stop()
	e2 := startEnv(t, p, be, Config{Zones: []string{catB}, StateFile: e.cfg.StateFile})
	d := e2.waitApplied(catB, 1)
	if d.Owned != 0 || d.Ignored["b.test."] == "" {
		t.Errorf("B after A was dropped from the configuration: %+v; want b left alone (it exists, B did not create it)", d.Status)
	}
	if st, _ := loadState(e.cfg.StateFile); len(st) != 0 {
		t.Errorf("state still records %v", st)
	}
	e2.waitZones(zones("a", "b")...)
}

func TestRouterNotify(t *testing.T) {
	p := primaryWith(t, "a")
	p.setZone(catA, catalogRRs(t, catA, 1, "2", members("a", "late")))
	p.setDown(true)
	e := startEnv(t, p, memory.New(), Config{Zones: []string{catA}})
	waitFor(t, "a failed first transfer", func() bool { return e.status(catA).LastError != "" })

	// A NOTIFY for the catalog is accepted before its first transfer, and retries it at once.
	p.setDown(false)
	if err := e.notify(catA); err != nil {
		t.Fatalf("NOTIFY for a catalog not transferred yet: %v, want accepted", err)
	}
	d := e.waitApplied(catA, 1)
	e.waitZones("a.test.")
	if d.Failed["late.test."] == "" {
		t.Errorf("status %+v: want late.test. failed (the primary does not serve it yet)", d.Status)
	}

	// A NOTIFY for a member not created yet is accepted and creates it.
	p.member("late.test.", 1)
	if err := e.notify("late.test."); err != nil {
		t.Fatalf("NOTIFY for a member not created yet: %v, want accepted", err)
	}
	e.waitZones("a.test.", "late.test.")
	if err := e.notify("stranger.test."); !errors.Is(err, transfer.ErrUnknownZone) {
		t.Errorf("NOTIFY for a zone no catalog lists: %v, want ErrUnknownZone", err)
	}
	if err := e.notify("a.test."); err != nil {
		t.Errorf("NOTIFY for a member held: %v", err)
	}
}

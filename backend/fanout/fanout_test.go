package fanout

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/file"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

const zone = "example.com."

func newFile(t *testing.T) *file.Backend {
	t.Helper()
	b, err := file.New(file.Config{ZoneFilePath: t.TempDir(), FileMode: file.DefaultFileMode, CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newIndex(t *testing.T) *zonediff.Index {
	t.Helper()
	x, err := zonediff.Open(t.TempDir(), zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func mustNew(t *testing.T, members ...Member) *Backend {
	t.Helper()
	b, err := New(members)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fan-out is a backend like any other: the conformance suite, with a file member and
// a memory member, each with its own diff index, run under -race (they share no record).
func TestConformance(t *testing.T) {
	backendtest.RunWith(t, func(t *testing.T) backend.Backend {
		return mustNew(t, Member{Name: "memory", Backend: memory.New(), Index: newIndex(t)},
			Member{Name: "file", Backend: newFile(t), Index: newIndex(t)})
	}, backendtest.Options{
		Contents: func(t *testing.T, b backend.Backend, zone string) []dns.RR {
			rrs, _ := b.(*Backend).members[0].Backend.(*memory.Backend).Records(zone)
			return rrs
		},
	})
}

// flaky is a backend that fails every call while down is set.
type flaky struct {
	backend.Backend
	down atomic.Bool
}

var errDown = errors.New("database is down")

func (f *flaky) Serial(ctx context.Context, zone string) (uint32, error) {
	if f.down.Load() {
		return 0, errDown
	}
	return f.Backend.Serial(ctx, zone)
}

func (f *flaky) Replace(ctx context.Context, zone string, src backend.Source) error {
	if f.down.Load() {
		return errDown
	}
	return f.Backend.Replace(ctx, zone, src)
}

func (f *flaky) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	if f.down.Load() {
		return errDown
	}
	return f.Backend.(backend.Incremental).Apply(ctx, zone, cs)
}

func stream(serial uint32) backend.Source {
	return backendtest.Stream(backendtest.Batches(backendtest.Zone(zone, serial, 50), 7)...)
}

func wantSerial(t *testing.T, b backend.Backend, want uint32) {
	t.Helper()
	if got, err := b.Serial(t.Context(), zone); err != nil || got != want {
		t.Fatalf("Serial = %d, %v; want %d", got, err, want)
	}
}

// A member that is down does not stop the other from getting the new version; the
// fan-out's serial stays at the down member's last version, so the engine transfers
// again, and once the member is back the next transfer brings it alone up to date.
func TestFailedMemberIsRetriedAlone(t *testing.T) {
	ctx := t.Context()
	mem, pdns := memory.New(), &flaky{Backend: memory.New()}
	b := mustNew(t, Member{Name: "powerdns", Backend: pdns}, Member{Name: "file", Backend: mem})
	if err := b.Create(ctx, zone, stream(1)); err != nil {
		t.Fatal(err)
	}
	wantSerial(t, b, 1)

	pdns.down.Store(true)
	err := b.Replace(ctx, zone, stream(2))
	if !errors.Is(err, errDown) {
		t.Fatalf("Replace with a member down: %v, want its error", err)
	}
	if s, _ := mem.Serial(ctx, zone); s != 2 {
		t.Errorf("the healthy member holds serial %d, want 2", s)
	}
	wantSerial(t, b, 1) // the down member's last known serial: the engine tries again
	st := b.Status(zone)
	if st["powerdns"].State != "failing" || st["powerdns"].Failures == 0 || st["file"].State != "ok" || *st["file"].Serial != 2 {
		t.Errorf("status while down: %+v", st)
	}

	// The retry while still down: the file member holds serial 2 and is skipped.
	if err := b.Replace(ctx, zone, stream(2)); !errors.Is(err, errDown) {
		t.Fatalf("retry while down: %v", err)
	}
	if got := b.Status(zone)["file"].LastApply; got != "held" {
		t.Errorf("the member already up to date was given the zone again (last apply %q)", got)
	}

	pdns.down.Store(false)
	wantSerial(t, b, 1)
	if err := b.Replace(ctx, zone, stream(2)); err != nil {
		t.Fatalf("retry once back: %v", err)
	}
	wantSerial(t, b, 2)
	if st := b.Status(zone)["powerdns"]; st.State != "ok" || st.Failures != 0 || st.LastError == "" {
		t.Errorf("status after the catch-up: %+v (the last error stays on record)", st)
	}
}

// A member never seen that cannot be read fails Serial: the engine cannot know what it lacks.
func TestUnknownMemberFailsSerial(t *testing.T) {
	pdns := &flaky{Backend: memory.New()}
	mem := memory.New()
	b := mustNew(t, Member{Name: "powerdns", Backend: pdns}, Member{Name: "file", Backend: mem})
	if err := mem.Create(t.Context(), zone, stream(1)); err != nil {
		t.Fatal(err)
	}
	pdns.down.Store(true)
	if _, err := b.Serial(t.Context(), zone); !errors.Is(err, errDown) {
		t.Fatalf("Serial = %v, want the member's error", err)
	}
}

// A zone missing from one member is not found, and a CREATE completes it there only.
func TestCreateCompletesAPartialZone(t *testing.T) {
	ctx := t.Context()
	a, c := memory.New(), memory.New()
	b := mustNew(t, Member{Name: "a", Backend: a}, Member{Name: "c", Backend: c})
	if err := a.Create(ctx, zone, stream(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Serial(ctx, zone); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Serial of a zone one member lacks: %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, zone, stream(3)); err != nil {
		t.Fatal(err)
	}
	wantSerial(t, b, 3)
	if st := b.Status(zone); st["a"].LastApply != "held" || st["c"].LastApply != "create" {
		t.Errorf("status: %+v", st)
	}
}

// An IXFR change set goes to the members at its first serial; a member already at its
// last serial is skipped, and a member elsewhere makes the engine fall back to a full zone.
func TestApplyPerMember(t *testing.T) {
	ctx := t.Context()
	a, c := memory.New(), memory.New()
	b := mustNew(t, Member{Name: "a", Backend: a}, Member{Name: "c", Backend: c})
	if err := b.Create(ctx, zone, stream(1)); err != nil {
		t.Fatal(err)
	}
	soa := func(s uint32) *dns.SOA { return backendtest.Zone(zone, s, 0)[0].(*dns.SOA) }
	add, _ := dns.NewRR("new.example.com. 300 IN A 192.0.2.9")
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(1), New: soa(2), Added: []dns.RR{add}}}}
	if err := c.Apply(ctx, zone, cs); err != nil { // c is ahead
		t.Fatal(err)
	}
	if err := b.Apply(ctx, zone, cs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantSerial(t, b, 2)
	if st := b.Status(zone); st["a"].LastApply != "ixfr" || st["c"].LastApply != "held" {
		t.Errorf("status: %+v", st)
	}
	// a at 2, c moved to 3 behind the agent's back: a change set from 3 fits c only... and
	// one from 2 fits a only; c, elsewhere, is inconsistent.
	cs3 := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(2), New: soa(4)}}}
	if err := c.Replace(ctx, zone, stream(3)); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, zone, cs3); !errors.Is(err, backend.ErrInconsistent) {
		t.Fatalf("Apply with a member at another serial: %v, want ErrInconsistent", err)
	}
	if s, _ := a.Serial(ctx, zone); s != 4 {
		t.Errorf("member a at serial %d, want 4", s)
	}
}

// slow blocks in Create until released, reading nothing.
type slow struct {
	backend.Backend
	release chan struct{}
}

func (s *slow) Create(ctx context.Context, zone string, src backend.Source) error {
	<-s.release
	return s.Backend.Create(ctx, zone, src)
}

// A member that has not read anything yet does not hold back the others: the fast one
// stores the whole zone while the slow one waits.
func TestSlowMemberDoesNotBlockOthers(t *testing.T) {
	fast, lazy := memory.New(), &slow{Backend: memory.New(), release: make(chan struct{})}
	b := mustNew(t, Member{Name: "slow", Backend: lazy}, Member{Name: "fast", Backend: fast})
	done := make(chan error, 1)
	go func() { done <- b.Create(context.Background(), zone, stream(5)) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s, err := fast.Serial(t.Context(), zone); err == nil && s == 5 {
			break
		}
		if time.Now().After(deadline) {
			close(lazy.release)
			t.Fatal("the fast member did not get the zone while the slow one waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(lazy.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantSerial(t, b, 5)
}

// A transfer that fails midway fails every member, each keeping its old version.
func TestFailingSourceKeepsEveryMemberOld(t *testing.T) {
	ctx := t.Context()
	a, c := memory.New(), newFile(t)
	b := mustNew(t, Member{Name: "a", Backend: a}, Member{Name: "c", Backend: c})
	if err := b.Create(ctx, zone, stream(1)); err != nil {
		t.Fatal(err)
	}
	cut := errors.New("connection reset")
	batches := backendtest.Batches(backendtest.Zone(zone, 2, 50), 7)
	if err := b.Replace(ctx, zone, backendtest.FailingStream(cut, batches[:3]...)); !errors.Is(err, cut) {
		t.Fatalf("Replace = %v, want the transfer's error", err)
	}
	for _, m := range []backend.Backend{a, c} {
		if s, _ := m.Serial(ctx, zone); s != 1 {
			t.Errorf("a member holds serial %d after a failed transfer, want 1", s)
		}
	}
}

// verify, dump and resync read the held zone back: a fan-out refuses clearly rather than
// let resync replace nothing and report a repair.
func TestReadRefused(t *testing.T) {
	b := mustNew(t, Member{Name: "a", Backend: memory.New()}, Member{Name: "c", Backend: memory.New()})
	err := b.Read(t.Context(), zone, func([]dns.RR) error { return nil })
	if !errors.Is(err, ErrNotOneZone) {
		t.Fatalf("Read = %v, want ErrNotOneZone", err)
	}
}

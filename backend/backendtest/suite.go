package backendtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// Run is the conformance suite. newBackend must return a fresh, empty backend for each
// call; every subtest uses its own. Backends that apply change sets (backend.Incremental)
// are checked on that too.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	RunWith(t, newBackend, Options{})
}

// RunWith is Run with the suite relaxed as opts says.
func RunWith(t *testing.T, newBackend func(t *testing.T) backend.Backend, opts Options) {
	tests := []struct {
		name string
		run  func(t *testing.T, b backend.Backend)
	}{
		{"CreateFromBatches", testCreateFromBatches},
		{"CreateExistingFails", testCreateExistingFails},
		{"ReplaceNewSerial", testReplaceNewSerial},
		{"ReplaceMissingIsNotFound", testReplaceMissing},
		{"ReplaceFailingSourceKeepsOld", testReplaceFailingSource},
		{"CreateFailingSourceLeavesNothing", testCreateFailingSource},
		{"CanceledContextLeavesOld", testCanceledContext},
		{"FirstRecordMustBeZoneSOA", testFirstRecordMustBeSOA},
		{"OutOfZoneOwnerRefused", testOutOfZoneOwner},
		{"DeleteThenNotFound", testDelete},
		{"DeleteMissingIsNotFound", testDeleteMissing},
		{"HostileNamesRefused", testHostileNames},
		{"TwoZonesConcurrently", testTwoZonesConcurrently},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newBackend(t)) })
	}
	t.Run("Incremental", func(t *testing.T) {
		if _, ok := newBackend(t).(backend.Incremental); !ok {
			t.Log("the backend applies full zones only (no backend.Incremental): nothing to check")
			return
		}
		runIncremental(t, newBackend, opts)
	})
}

const zone = "example.com."

func mustCreate(t *testing.T, b backend.Backend, name string, serial uint32) {
	t.Helper()
	if err := b.Create(t.Context(), name, Stream(Batches(Zone(name, serial, 20), 7)...)); err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
}

func wantSerial(t *testing.T, b backend.Backend, name string, want uint32) {
	t.Helper()
	got, err := b.Serial(t.Context(), name)
	if err != nil {
		t.Fatalf("Serial(%s): %v, want %d", name, err, want)
	}
	if got != want {
		t.Fatalf("Serial(%s) = %d, want %d", name, got, want)
	}
}

func wantAbsent(t *testing.T, b backend.Backend, name string) {
	t.Helper()
	if serial, err := b.Serial(t.Context(), name); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Serial(%s) = %d, %v; want ErrNotFound", name, serial, err)
	}
	if zones := listZones(t, b); slices.Contains(zones, name) {
		t.Fatalf("Zones() = %v still lists %s", zones, name)
	}
}

func listZones(t *testing.T, b backend.Backend) []string {
	t.Helper()
	zones, err := b.Zones(t.Context())
	if err != nil {
		t.Fatalf("Zones: %v", err)
	}
	return zones
}

func testCreateFromBatches(t *testing.T, b backend.Backend) {
	if err := b.Create(t.Context(), zone, Stream(Batches(Zone(zone, 2024010101, 50), 7)...)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	wantSerial(t, b, zone, 2024010101)
	if zones := listZones(t, b); !slices.Equal(zones, []string{zone}) {
		t.Fatalf("Zones() = %v, want [%s]", zones, zone)
	}
}

func testCreateExistingFails(t *testing.T, b backend.Backend) {
	mustCreate(t, b, zone, 10)
	if err := b.Create(t.Context(), zone, Stream(Zone(zone, 11, 3))); err == nil {
		t.Fatal("second Create of the same zone succeeded")
	}
	wantSerial(t, b, zone, 10)
}

func testReplaceNewSerial(t *testing.T, b backend.Backend) {
	mustCreate(t, b, zone, 10)
	if err := b.Replace(t.Context(), zone, Stream(Batches(Zone(zone, 11, 30), 4)...)); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	wantSerial(t, b, zone, 11)
}

func testReplaceMissing(t *testing.T, b backend.Backend) {
	err := b.Replace(t.Context(), zone, Stream(Zone(zone, 1, 3)))
	if !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Replace of a missing zone: %v, want ErrNotFound", err)
	}
	wantAbsent(t, b, zone)
}

var errTransfer = errors.New("connection reset by primary")

func testReplaceFailingSource(t *testing.T, b backend.Backend) {
	mustCreate(t, b, zone, 10)
	batches := Batches(Zone(zone, 11, 20), 5)
	err := b.Replace(t.Context(), zone, FailingStream(errTransfer, batches[0]))
	if err == nil {
		t.Fatal("Replace from a failing source succeeded")
	}
	wantSerial(t, b, zone, 10)
}

func testCreateFailingSource(t *testing.T, b backend.Backend) {
	batches := Batches(Zone(zone, 11, 20), 5)
	if err := b.Create(t.Context(), zone, FailingStream(errTransfer, batches[0])); err == nil {
		t.Fatal("Create from a failing source succeeded")
	}
	wantAbsent(t, b, zone)
	// Nothing may be left behind that stops the retry.
	mustCreate(t, b, zone, 12)
	wantSerial(t, b, zone, 12)
}

// cancelingSource cancels its context after the first batch, as a shutdown would in the
// middle of a transfer.
type cancelingSource struct {
	backend.Source
	cancel context.CancelFunc
	calls  int
}

func (s *cancelingSource) Next() ([]dns.RR, error) {
	s.calls++
	if s.calls == 2 {
		s.cancel()
	}
	return s.Source.Next()
}

func testCanceledContext(t *testing.T, b backend.Backend) {
	mustCreate(t, b, zone, 10)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := &cancelingSource{Source: Stream(Batches(Zone(zone, 11, 20), 5)...), cancel: cancel}
	if err := b.Replace(ctx, zone, src); err == nil {
		t.Fatal("Replace succeeded although its context was canceled midway")
	}
	wantSerial(t, b, zone, 10)
}

func testFirstRecordMustBeSOA(t *testing.T, b backend.Backend) {
	good := Zone(zone, 11, 4)
	otherSOA := Zone("other.example.", 11, 0)[0]
	tests := []struct {
		name    string
		batches [][]dns.RR
	}{
		{"empty stream", nil},
		{"NS first", [][]dns.RR{good[1:], good[:1]}},
		{"SOA of another zone", [][]dns.RR{append([]dns.RR{otherSOA}, good[1:]...)}},
		{"SOA of a subdomain", [][]dns.RR{append([]dns.RR{Zone("sub."+zone, 11, 0)[0]}, good[1:]...)}},
	}
	mustCreate(t, b, zone, 10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := b.Replace(t.Context(), zone, Stream(tt.batches...)); err == nil {
				t.Fatal("Replace accepted the stream")
			}
			wantSerial(t, b, zone, 10)
			if err := b.Create(t.Context(), "new."+zone, Stream(tt.batches...)); err == nil {
				t.Fatal("Create accepted the stream")
			}
			wantAbsent(t, b, "new."+zone)
		})
	}
}

func testOutOfZoneOwner(t *testing.T, b backend.Backend) {
	outside := &dns.A{
		Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A:   []byte{192, 0, 2, 66},
	}
	// A name that merely ends in the same characters is not inside the zone.
	lookalike := &dns.A{
		Hdr: dns.RR_Header{Name: "www.notexample.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A:   []byte{192, 0, 2, 67},
	}
	mustCreate(t, b, zone, 10)
	for _, rr := range []dns.RR{outside, lookalike} {
		t.Run(rr.Header().Name, func(t *testing.T) {
			batches := Batches(append(Zone(zone, 11, 12), rr), 5)
			if err := b.Replace(t.Context(), zone, Stream(batches...)); err == nil {
				t.Fatal("Replace accepted an out-of-zone record")
			}
			wantSerial(t, b, zone, 10)
			other := "other.test."
			batches = Batches(append(Zone(other, 11, 12), rr), 5)
			if err := b.Create(t.Context(), other, Stream(batches...)); err == nil {
				t.Fatal("Create accepted an out-of-zone record")
			}
			wantAbsent(t, b, other)
		})
	}
}

func testDelete(t *testing.T, b backend.Backend) {
	mustCreate(t, b, zone, 10)
	mustCreate(t, b, "keep.test.", 5)
	if err := b.Delete(t.Context(), zone); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, b, zone)
	wantSerial(t, b, "keep.test.", 5)
	// A deleted zone can be created again.
	mustCreate(t, b, zone, 20)
	wantSerial(t, b, zone, 20)
}

func testDeleteMissing(t *testing.T, b backend.Backend) {
	if err := b.Delete(t.Context(), zone); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Delete of a missing zone: %v, want ErrNotFound", err)
	}
}

// HostileNames are zone names that must never reach a path, a command or a query.
var HostileNames = []string{
	``, `.`, `example.com`, `a"b.`, `../etc.`, `..`, `x/y.`, `{a}.`, `{file}.`, `a b.`,
	`a;b.`, `a..b.`, `a\.b.`, "a\nb.", `$(id).`, `*.example.com.`, `-rf.example.`, `a-.example.`,
}

// untouchedSource fails the test if a backend reads it: a refused name must be refused
// before anything is transferred.
type untouchedSource struct{ t *testing.T }

func (s untouchedSource) Next() ([]dns.RR, error) {
	s.t.Error("backend read the source of a zone whose name it must refuse")
	return nil, errTransfer
}

func testHostileNames(t *testing.T, b backend.Backend) {
	ctx := t.Context()
	for _, name := range HostileNames {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			if err := b.Create(ctx, name, untouchedSource{t}); err == nil {
				t.Error("Create accepted the name")
			}
			if err := b.Replace(ctx, name, untouchedSource{t}); err == nil {
				t.Error("Replace accepted the name")
			}
			// "Not found" would invite the caller to create the zone: a refusal must say why.
			if _, err := b.Serial(ctx, name); err == nil || errors.Is(err, backend.ErrNotFound) {
				t.Errorf("Serial = %v, want a refusal that is not ErrNotFound", err)
			}
			if err := b.Delete(ctx, name); err == nil || errors.Is(err, backend.ErrNotFound) {
				t.Errorf("Delete = %v, want a refusal that is not ErrNotFound", err)
			}
		})
	}
	if zones := listZones(t, b); len(zones) != 0 {
		t.Fatalf("Zones() = %v after hostile names, want none", zones)
	}
}

// meetingSource delivers its first batch, then waits until the other zone's transfer has
// delivered its first batch too. A backend that serialises all zones makes it time out.
type meetingSource struct {
	backend.Source
	calls   int
	arrived chan struct{} // closed by this source after its first batch
	other   chan struct{}
}

func (s *meetingSource) Next() ([]dns.RR, error) {
	s.calls++
	if s.calls == 2 {
		close(s.arrived)
		select {
		case <-s.other:
		case <-time.After(5 * time.Second):
			return nil, errors.New("the other zone's transfer never started: zones are serialised")
		}
	}
	return s.Source.Next()
}

func testTwoZonesConcurrently(t *testing.T, b backend.Backend) {
	names := []string{"one.test.", "two.test."}
	run := func(op func(context.Context, string, backend.Source) error, serial uint32) {
		t.Helper()
		arrived := []chan struct{}{make(chan struct{}), make(chan struct{})}
		errs := make([]error, len(names))
		var wg sync.WaitGroup
		for i, name := range names {
			src := &meetingSource{
				Source:  Stream(Batches(Zone(name, serial, 40), 6)...),
				arrived: arrived[i],
				other:   arrived[1-i],
			}
			wg.Go(func() { errs[i] = op(t.Context(), name, src) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", names[i], err)
			}
		}
		for _, name := range names {
			wantSerial(t, b, name, serial)
		}
	}
	run(b.Create, 1)
	run(b.Replace, 2)
	zones := listZones(t, b)
	slices.Sort(zones)
	if !slices.Equal(zones, names) {
		t.Fatalf("Zones() = %v, want %v", zones, names)
	}
}

package backendtest

import (
	"errors"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// Options relaxes the suite where a backend cannot keep a promise and says so.
type Options struct {
	// LenientDeletes: the backend cannot tell that a change set deletes a record the
	// zone does not hold (BIND's dynamic update ignores such deletions, RFC 2136 §3.4.2.4).
	LenientDeletes bool
	// Contents reads back what the backend holds of a zone, SOA included, so the diff
	// cases can compare it with the version they applied. Without it they check serials
	// and what zonediff reports only.
	Contents func(t *testing.T, b backend.Backend, zone string) []dns.RR
}

// runIncremental checks backend.Incremental: change sets apply all or nothing, chain over
// several steps, and are refused when they do not fit the stored zone.
func runIncremental(t *testing.T, newBackend func(t *testing.T) backend.Backend, opts Options) {
	tests := []struct {
		name string
		run  func(t *testing.T, b backend.Incremental)
		skip bool
	}{
		{"ApplyStepsInOrder", testApplySteps, false},
		{"ApplyWrongStartSerialRefused", testApplyWrongStart, false},
		{"ApplyMissingDeletionRefused", testApplyMissingDeletion, opts.LenientDeletes},
		{"ApplyMissingZoneNotFound", testApplyMissingZone, false},
	}
	for _, tt := range tests {
		if tt.skip {
			continue
		}
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newBackend(t).(backend.Incremental)) })
	}
	t.Run("Diff", func(t *testing.T) { runDiff(t, newBackend, opts) })
}

func soaAt(serial uint32) *dns.SOA {
	return Zone(zone, serial, 0)[0].(*dns.SOA)
}

func aRecord(name string, last byte) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{198, 51, 100, last}}
}

func testApplySteps(t *testing.T, b backend.Incremental) {
	mustCreate(t, b.(backend.Backend), zone, 1)
	stored := Zone(zone, 1, 20)
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{
		{Old: soaAt(1), New: soaAt(2), Deleted: []dns.RR{stored[2]}, Added: []dns.RR{aRecord("new-1."+zone, 1)}},
		{Old: soaAt(2), New: soaAt(3), Deleted: []dns.RR{stored[3]}, Added: []dns.RR{aRecord("new-2."+zone, 2)}},
	}}
	if err := b.Apply(t.Context(), zone, cs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantSerial(t, b.(backend.Backend), zone, 3)
	// The content shows through what a further change set may do: the records added can
	// be deleted, and the ones deleted are gone.
	next := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{
		{Old: soaAt(3), New: soaAt(4), Deleted: []dns.RR{aRecord("new-1."+zone, 1), aRecord("new-2."+zone, 2)}},
	}}
	if err := b.Apply(t.Context(), zone, next); err != nil {
		t.Fatalf("deleting the records the first change set added: %v", err)
	}
	wantSerial(t, b.(backend.Backend), zone, 4)
}

func testApplyWrongStart(t *testing.T, b backend.Incremental) {
	mustCreate(t, b.(backend.Backend), zone, 5)
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{
		{Old: soaAt(4), New: soaAt(6), Added: []dns.RR{aRecord("new."+zone, 1)}},
	}}
	if err := b.Apply(t.Context(), zone, cs); !errors.Is(err, backend.ErrInconsistent) {
		t.Fatalf("Apply from serial 4 to a zone at 5: %v, want ErrInconsistent", err)
	}
	wantSerial(t, b.(backend.Backend), zone, 5)
}

func testApplyMissingDeletion(t *testing.T, b backend.Incremental) {
	mustCreate(t, b.(backend.Backend), zone, 1)
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{
		{Old: soaAt(1), New: soaAt(2), Deleted: []dns.RR{aRecord("absent."+zone, 9)}, Added: []dns.RR{aRecord("new."+zone, 1)}},
	}}
	if err := b.Apply(t.Context(), zone, cs); !errors.Is(err, backend.ErrInconsistent) {
		t.Fatalf("Apply deleting a record the zone lacks: %v, want ErrInconsistent", err)
	}
	wantSerial(t, b.(backend.Backend), zone, 1)
}

func testApplyMissingZone(t *testing.T, b backend.Incremental) {
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soaAt(1), New: soaAt(2)}}}
	if err := b.Apply(t.Context(), zone, cs); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Apply to a missing zone: %v, want ErrNotFound", err)
	}
}

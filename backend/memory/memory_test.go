package memory

import (
	"errors"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

func TestConformance(t *testing.T) {
	backendtest.RunWith(t, func(*testing.T) backend.Backend { return New() }, backendtest.Options{
		Contents: func(t *testing.T, b backend.Backend, zone string) []dns.RR {
			rrs, _ := b.(*Backend).Records(zone)
			return rrs
		},
	})
}

func TestRecordsAreACompleteCopy(t *testing.T) {
	b := New()
	want := backendtest.Zone("example.com.", 7, 9)
	if err := b.Create(t.Context(), "example.com.", backendtest.Stream(backendtest.Batches(want, 4)...)); err != nil {
		t.Fatal(err)
	}
	got, ok := b.Records("example.com.")
	if !ok || len(got) != len(want) {
		t.Fatalf("Records = %d records, %v; want %d", len(got), ok, len(want))
	}
	for i := range want {
		if got[i].String() != want[i].String() {
			t.Errorf("record %d = %s, want %s", i, got[i], want[i])
		}
	}
	// Changing what a caller got back must not change the stored zone.
	got[1].Header().Ttl = 1
	again, _ := b.Records("example.com.")
	if again[1].Header().Ttl == 1 {
		t.Error("Records returned the stored records, not a copy")
	}
}

func TestFailHook(t *testing.T) {
	errInjected := errors.New("injected")
	b := &backendtest.Faulty{Backend: New(), Fail: func(op, zone string) error {
		if op == "replace" && zone == "example.com." {
			return errInjected
		}
		return nil
	}}
	rrs := backendtest.Zone("example.com.", 7, 3)
	if err := b.Create(t.Context(), "example.com.", backendtest.Stream(rrs)); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(t.Context(), "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 8, 3))); !errors.Is(err, errInjected) {
		t.Fatalf("Replace = %v, want the injected error", err)
	}
	if serial, _ := b.Serial(t.Context(), "example.com."); serial != 7 {
		t.Fatalf("serial = %d after a failed replace, want 7", serial)
	}
}

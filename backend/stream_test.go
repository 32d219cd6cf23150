package backend_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

const zone = "example.com."

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// read runs the check over the batches and returns what each was handed.
func read(ctx context.Context, check backend.StreamCheck, src backend.Source) ([]dns.RR, *dns.SOA, error) {
	var got []dns.RR
	soa, err := check.Read(ctx, src, func(batch []dns.RR) error {
		got = append(got, batch...)
		return nil
	})
	return got, soa, err
}

func TestStreamCheckRefuses(t *testing.T) {
	good := backendtest.Zone(zone, 7, 6)
	closing := backendtest.Zone(zone, 7, 0)[0]
	newer := backendtest.Zone(zone, 8, 0)[0]
	broken := errors.New("connection reset")
	tests := []struct {
		name           string
		src            backend.Source
		dropClosingSOA bool
		want           string
	}{
		{"empty stream", backendtest.Stream(), false, "empty stream: no SOA for example.com."},
		{"NS first", backendtest.Stream(good[1:], good[:1]), false, "stream does not start with the SOA of example.com."},
		{"SOA of another zone", backendtest.Stream(backendtest.Zone("example.org.", 7, 3)), false, "does not start with the SOA"},
		{"SOA of a subdomain", backendtest.Stream(backendtest.Zone("sub."+zone, 7, 3)), false, "does not start with the SOA"},
		{"owner outside", backendtest.Stream(good, []dns.RR{mustRR(t, "www.example.org. 300 IN A 192.0.2.1")}), false, "is outside zone example.com."},
		{"lookalike owner", backendtest.Stream(good, []dns.RR{mustRR(t, "www.notexample.com. 300 IN A 192.0.2.1")}), true, "is outside zone example.com."},
		{"class CH", backendtest.Stream(good, []dns.RR{mustRR(t, "www.example.com. 300 CH A 192.0.2.1")}), false, "class CH, not IN"},
		{"CAA tag too long", backendtest.Stream(good, []dns.RR{mustRR(t, "example.com. 300 IN CAA 0 issuewildcardplus \"ca.example\"")}), false, "CAA tag"},
		{"closing SOA", backendtest.Stream(good, []dns.RR{closing}), false, "second SOA in the stream"},
		{"different SOA", backendtest.Stream(good, []dns.RR{newer}), true, "second, different SOA in the stream"},
		{"transfer breaks", backendtest.FailingStream(broken, good), true, "transfer failed: connection reset"},
		{"wrapped EOF", backendtest.FailingStream(fmt.Errorf("read: %w", io.EOF), good), false, "transfer failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := backend.StreamCheck{Zone: zone, DropClosingSOA: tt.dropClosingSOA}
			_, _, err := read(t.Context(), check, tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestStreamCheckPassesTheZone(t *testing.T) {
	rrs := backendtest.Zone(zone, 7, 11)
	for _, dropClosingSOA := range []bool{false, true} {
		check := backend.StreamCheck{Zone: zone, DropClosingSOA: dropClosingSOA}
		got, soa, err := read(t.Context(), check, backendtest.Stream(backendtest.Batches(rrs, 4)...))
		if err != nil {
			t.Fatal(err)
		}
		if soa.Serial != 7 || !slices.Equal(got, rrs) {
			t.Fatalf("DropClosingSOA %v: serial %d, %d records; want 7, %d", dropClosingSOA, soa.Serial, len(got), len(rrs))
		}
	}
}

// The SOA that closes an AXFR is dropped without touching the source's batch.
func TestStreamCheckDropsClosingSOA(t *testing.T) {
	rrs := backendtest.Zone(zone, 7, 3)
	last := append([]dns.RR{rrs[3], backendtest.Zone(zone, 7, 0)[0]}, rrs[4])
	before := slices.Clone(last)
	check := backend.StreamCheck{Zone: zone, DropClosingSOA: true}
	got, _, err := read(t.Context(), check, backendtest.Stream(rrs[:3], last))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, rrs) {
		t.Fatalf("got %v, want %v", got, rrs)
	}
	if !slices.Equal(last, before) {
		t.Fatal("the source's batch was changed")
	}
}

func TestStreamCheckStops(t *testing.T) {
	check := backend.StreamCheck{Zone: zone}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := read(ctx, check, backendtest.Stream(backendtest.Zone(zone, 7, 3))); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	full := errors.New("disk full")
	_, err := check.Read(t.Context(), backendtest.Stream(backendtest.Zone(zone, 7, 3)), func([]dns.RR) error { return full })
	if !errors.Is(err, full) {
		t.Errorf("failing each: %v", err)
	}
}

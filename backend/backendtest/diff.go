package backendtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

// runDiff checks that full zones for a held zone are applied as their difference
// (zonediff) and leave the backend holding exactly the new version.
func runDiff(t *testing.T, newBackend func(t *testing.T) backend.Backend, opts Options) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	base := func(serial uint32, extra ...string) []dns.RR {
		// The records stay, only the SOA's serial changes. More of them than
		// zonediff.SmallZone: some backends keep no index for a smaller zone.
		rrs := Zone(zone, 1, zonediff.SmallZone+30)
		rrs[0] = soaAt(serial)
		for _, s := range extra {
			rrs = append(rrs, rr(s))
		}
		return rrs
	}
	tests := []struct {
		name      string
		old, new  []dns.RR
		want      []dns.RR // what the backend must hold; new when nil
		deleted   int
		added     int
		wantApply string
	}{
		{name: "TTLOnlyChange", old: base(1, "ttl.example.com. 300 IN A 192.0.2.1"),
			new: base(2, "ttl.example.com. 600 IN A 192.0.2.1"), deleted: 1, added: 1},
		{name: "CaseDifferingOwner", old: base(1, "Mixed.Example.com. 300 IN A 192.0.2.2"),
			new: base(2, "mixed.example.COM. 300 IN A 192.0.2.2")},
		{name: "DuplicatesInNewZone", old: base(1),
			new:  base(2, "dup.example.com. 300 IN TXT \"x\"", "DUP.example.com. 300 IN TXT \"x\"", "dup.example.com. 300 IN TXT \"x\""),
			want: base(2, "dup.example.com. 300 IN TXT \"x\""), added: 1},
		{name: "TypeChangeAtOneOwner", old: base(1, "www.example.com. 300 IN A 192.0.2.3"),
			new: base(2, "www.example.com. 300 IN CNAME host-1.example.com."), deleted: 1, added: 1},
		{name: "DelegationAdded", old: base(1),
			new: base(2, "sub.example.com. 300 IN NS ns1.sub.example.com.", "ns1.sub.example.com. 300 IN A 192.0.2.53",
				"deep.er.sub.example.com. 300 IN A 192.0.2.54"), added: 3},
		{name: "DelegationRemoved", old: base(1, "sub.example.com. 300 IN NS ns1.sub.example.com.",
			"ns1.sub.example.com. 300 IN A 192.0.2.53", "deep.er.sub.example.com. 300 IN A 192.0.2.54"),
			new: base(2), deleted: 3},
		{name: "EmptyDifference", old: base(1), new: base(2)},
		{name: "LargeDifferenceReplaces", old: base(1), new: Zone(zone, 2, 0), wantApply: "replace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			idx, err := zonediff.Open(t.TempDir(), zonediff.DefaultMaxRatio)
			if err != nil {
				t.Fatal(err)
			}
			if res, err := idx.Full(t.Context(), b, zone, false, 0, Stream(Batches(tt.old, 7)...)); err != nil || res.Apply != "create" {
				t.Fatalf("creating the zone: %+v, %v", res, err)
			}
			res, err := idx.Full(t.Context(), b, zone, true, 1, Stream(Batches(tt.new, 7)...))
			if err != nil {
				t.Fatalf("Full: %v", err)
			}
			wantApply := tt.wantApply
			if wantApply == "" {
				wantApply = "diff"
			}
			if res.Apply != wantApply || (wantApply == "diff" && (res.Deleted != tt.deleted || res.Added != tt.added)) {
				t.Fatalf("applied as %+v, want %s with %d deleted, %d added", res, wantApply, tt.deleted, tt.added)
			}
			wantSerial(t, b, zone, 2)
			want := tt.want
			if want == nil {
				want = tt.new
			}
			wantContents(t, b, opts, want)
			if wantApply != "diff" {
				return
			}
			// The index now describes the new version: a further change is a diff again.
			next := append(slices.Clone(want), rr("later.example.com. 300 IN A 192.0.2.99"))
			next[0] = soaAt(3)
			if res, err := idx.Full(t.Context(), b, zone, true, 2, Stream(next)); err != nil || res.Apply != "diff" || res.Added != 1 {
				t.Fatalf("the next change: %+v, %v; want a diff adding 1 record", res, err)
			}
			wantContents(t, b, opts, next)
		})
	}
	t.Run("SmallZone", func(t *testing.T) { runSmallZone(t, newBackend, opts) })
}

// runSmallZone changes a zone of a few records twice: a backend that replaces small zones
// as cheaply as it diffs them (zonediff.SmallZoneReplacer) keeps no index for it and
// replaces it, saying why; any other diffs it. Either way it holds each new version.
func runSmallZone(t *testing.T, newBackend func(t *testing.T) backend.Backend, opts Options) {
	b := newBackend(t)
	idx, err := zonediff.Open(t.TempDir(), zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	_, replaces := b.(zonediff.SmallZoneReplacer)
	v := Zone(zone, 1, 8)
	if res, err := idx.Full(t.Context(), b, zone, false, 0, Stream(Batches(v, 3)...)); err != nil || res.Apply != "create" {
		t.Fatalf("creating the zone: %+v, %v", res, err)
	}
	for serial := uint32(2); serial <= 3; serial++ {
		v = append(slices.Clone(v), Zone(zone, serial, 8+int(serial))[len(v)])
		v[0] = soaAt(serial)
		res, err := idx.Full(t.Context(), b, zone, true, serial-1, Stream(Batches(v, 3)...))
		if err != nil {
			t.Fatalf("serial %d: %v", serial, err)
		}
		if replaces && (res.Apply != "replace" || !strings.Contains(res.Reason, "at most")) {
			t.Fatalf("serial %d applied as %+v; want a replace (no index of a small zone)", serial, res)
		}
		if !replaces && (res.Apply != "diff" || res.Added != 1 || res.Deleted != 0) {
			t.Fatalf("serial %d applied as %+v; want a diff adding 1 record", serial, res)
		}
		wantSerial(t, b, zone, serial)
		wantContents(t, b, opts, v)
	}
}

// wantContents compares what the backend holds with want, as record sets, when the
// backend's test can read its contents back.
func wantContents(t *testing.T, b backend.Backend, opts Options, want []dns.RR) {
	t.Helper()
	if opts.Contents == nil {
		return
	}
	if diff := diffSets(canonicalSet(want), canonicalSet(opts.Contents(t, b, zone))); diff != "" {
		t.Fatalf("the backend does not hold the new version:\n%s", diff)
	}
}

// canonicalSet is a zone as sorted unique lines: owner lowercased, TTL kept.
func canonicalSet(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func diffSets(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			fmt.Fprintf(&b, "missing: %s\n", w)
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			fmt.Fprintf(&b, "extra:   %s\n", g)
		}
	}
	return b.String()
}

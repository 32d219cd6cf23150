package powerdns

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

// Issue 12 item 4: a record repeated in a full zone (or with its owner in another case) is
// one record, one row (RFC 2181 §5), so that deleting it later leaves nothing behind; and
// a change whose result PowerDNS cannot store is refused naming the type.
func runDuplicates(t *testing.T, newBackend func(t *testing.T) (*Backend, func() []string)) {
	base := mustRRs(t, scenarioBase)
	dup := mustRRs(t, `
dup.example.com. 300 IN A 192.0.2.8
DUP.Example.COM. 300 IN A 192.0.2.8
dup.example.com. 60 IN A 192.0.2.8
only.dup.example.com. 300 IN TXT "x"
`)
	t.Run("full zone with the same record thrice", func(t *testing.T) {
		withDups, dumpDups := newBackend(t)
		zone := append(slices.Clone(base), dup...)
		if err := withDups.Create(t.Context(), "example.com.", backendtest.Stream(backendtest.Batches(zone, 3)...)); err != nil {
			t.Fatal(err)
		}
		once, dumpOnce := newBackend(t)
		if err := once.Create(t.Context(), "example.com.", backendtest.Stream(append(slices.Clone(base), dup[0], dup[3]))); err != nil {
			t.Fatal(err)
		}
		if got, want := dumpDups(), dumpOnce(); !slices.Equal(got, want) {
			t.Errorf("rows of a zone holding a record thrice:\n  %s\nwant (held once):\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		// The same through Replace, then one delete removes the record.
		next := slices.Clone(zone)
		next[0] = mustRRs(t, "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2 3600 600 86400 300")[0]
		if err := withDups.Replace(t.Context(), "example.com.", backendtest.Stream(next)); err != nil {
			t.Fatal(err)
		}
		cs, _ := buildChange(t, next, []scenarioStep{{del: []string{"dup.example.com. 300 IN A 192.0.2.8"}}})
		if err := withDups.Apply(t.Context(), "example.com.", cs); err != nil {
			t.Fatal(err)
		}
		for _, r := range dumpDups() {
			if strings.HasPrefix(r, "dup.example.com|A|") {
				t.Errorf("after the delete a row is left: %s", r)
			}
		}
	})
	t.Run("final zone holds a type PowerDNS cannot store", func(t *testing.T) {
		b, dump := newBackend(t)
		if err := b.Create(t.Context(), "example.com.", backendtest.Stream(base)); err != nil {
			t.Fatal(err)
		}
		before := dump()
		cs, _ := buildChange(t, base, []scenarioStep{
			{add: []string{"n.example.com. 300 IN A 192.0.2.1"}},
			{add: []string{`tmp.example.com. 300 IN TYPE65000 \# 2 abcd`}},
		})
		err := b.Apply(t.Context(), "example.com.", cs)
		if err == nil || errors.Is(err, backend.ErrInconsistent) || !strings.Contains(err.Error(), "type TYPE65000 cannot be stored in PowerDNS") {
			t.Errorf("Apply = %v, want an error naming TYPE65000 (not ErrInconsistent: a full transfer would fail the same way)", err)
		}
		if after := dump(); !slices.Equal(before, after) {
			t.Errorf("a refused change set changed the rows")
		}
		// Deleting such a record: the zone cannot hold it, so the change set does not fit.
		cs, _ = buildChange(t, base, []scenarioStep{{del: []string{`tmp.example.com. 300 IN TYPE65000 \# 2 abcd`}}})
		if err := b.Apply(t.Context(), "example.com.", cs); !errors.Is(err, backend.ErrInconsistent) {
			t.Errorf("Apply deleting a record of a type never stored = %v, want ErrInconsistent", err)
		}
	})
}

func TestFakeDuplicates(t *testing.T) {
	runDuplicates(t, func(t *testing.T) (*Backend, func() []string) {
		b, st, _ := fakeBackend(t, testConfig())
		return b, func() []string { return st.rowsOf("example.com") }
	})
}

// Rows an older version stored twice are all removed by the delete of the record.
func TestFakeDeleteRemovesEveryCopy(t *testing.T) {
	b, st, _ := fakeBackend(t, testConfig())
	soa := row{Name: "example.com", Type: "SOA", Content: "ns1.example.com hostmaster.example.com 1 3600 600 86400 300", TTL: 3600, Auth: true}
	a := row{Name: "www.example.com", Type: "A", Content: "192.0.2.2", TTL: 300, Auth: true}
	st.put("example.com", DefaultAccount, soa, a, a)
	cs, _ := buildChange(t, mustRRs(t, scenarioBase), []scenarioStep{{del: []string{"www.example.com. 300 IN A 192.0.2.2"}}})
	if err := b.Apply(t.Context(), "example.com.", cs); err != nil {
		t.Fatal(err)
	}
	if rows := st.rowsOf("example.com"); len(rows) != 1 {
		t.Errorf("rows after the delete: %v, want the SOA only", rows)
	}
}

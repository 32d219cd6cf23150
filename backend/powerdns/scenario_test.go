package powerdns

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

// The incremental path must leave exactly the rows a full load of the new version
// writes: ENT rows and auth flags included. These scenarios run against the fake store
// and against MariaDB.

const scenarioBase = `
example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 300
example.com. 3600 IN NS ns1.example.com.
ns1.example.com. 3600 IN A 192.0.2.1
www.example.com. 300 IN A 192.0.2.2
a.b.c.example.com. 300 IN A 192.0.2.3
mid.example.com. 300 IN A 192.0.2.4
leaf.mid.example.com. 300 IN A 192.0.2.5
sub.example.com. 300 IN NS ns.sub.example.com.
ns.sub.example.com. 300 IN A 192.0.2.53
x.y.sub.example.com. 300 IN A 192.0.2.54
deeper.sub.example.com. 300 IN NS ns.deeper.sub.example.com.
ns.deeper.sub.example.com. 300 IN A 192.0.2.55
host.zone2.example.com. 300 IN A 192.0.2.6
txt.example.com. 300 IN TXT "Case"
txt.example.com. 300 IN TXT "case"
a\.e.example.com. 300 IN A 192.0.2.40
x\\.e.example.com. 300 IN A 192.0.2.41
deep.e.example.com. 300 IN A 192.0.2.42
`

const scenarioDS = "sub.example.com. 300 IN DS 12345 8 2 49fd46e6c4b45c55d4ac69cbd3cd34ac1afe51de9f6a1cfdd27b8e0f2a8f4e6a"

// scenarioStep lists deleted and added records, one per line.
type scenarioStep struct{ del, add []string }

var scenarios = []struct {
	name  string
	steps []scenarioStep
}{
	{"new deep name makes ENTs", []scenarioStep{{add: []string{"p.q.r.example.com. 300 IN A 192.0.2.9"}}}},
	{"last record under ENTs goes", []scenarioStep{{del: []string{"a.b.c.example.com. 300 IN A 192.0.2.3"}}}},
	{"data at an ENT", []scenarioStep{{add: []string{`c.example.com. 300 IN TXT "now data"`}}}},
	{"data above data goes", []scenarioStep{{del: []string{"mid.example.com. 300 IN A 192.0.2.4"}}}},
	{"new delegation over names", []scenarioStep{{add: []string{"zone2.example.com. 300 IN NS ns.example.net."}}}},
	{"delegation goes, nested one stays", []scenarioStep{{del: []string{"sub.example.com. 300 IN NS ns.sub.example.com."}}}},
	{"DS at a delegation", []scenarioStep{{add: []string{scenarioDS}}}},
	{"glue below a cut", []scenarioStep{{add: []string{"n.e.w.sub.example.com. 300 IN A 192.0.2.56"}}}},
	{"two steps: add, then delete", []scenarioStep{
		{add: []string{"tmp.x.example.com. 300 IN A 192.0.2.7"}},
		{del: []string{"tmp.x.example.com. 300 IN A 192.0.2.7"}, add: []string{"www.example.com. 300 IN AAAA 2001:db8::2"}},
	}},
	{"TTL change", []scenarioStep{{del: []string{"www.example.com. 300 IN A 192.0.2.2"}, add: []string{"www.example.com. 60 IN A 192.0.2.2"}}}},
	{"added record exists already", []scenarioStep{{add: []string{"www.example.com. 300 IN A 192.0.2.2"}}}},
	{"TXT differing in case only", []scenarioStep{{del: []string{`txt.example.com. 300 IN TXT "Case"`}}}},
	{"whole delegation goes", []scenarioStep{{del: []string{
		"sub.example.com. 300 IN NS ns.sub.example.com.", "ns.sub.example.com. 300 IN A 192.0.2.53",
		"x.y.sub.example.com. 300 IN A 192.0.2.54", "deeper.sub.example.com. 300 IN NS ns.deeper.sub.example.com.",
		"ns.deeper.sub.example.com. 300 IN A 192.0.2.55",
	}}}},
	// RFC 2181 §5: a record twice, or with its owner in another case, is one record.
	{"same record added twice", []scenarioStep{{add: []string{"dup.example.com. 300 IN A 192.0.2.8", "DUP.Example.com. 300 IN A 192.0.2.8"}}}},
	{"case-differing owner deletes", []scenarioStep{{del: []string{"WWW.EXAMPLE.COM. 300 IN A 192.0.2.2"}}}},
	{"added by one step in another case, deleted by the next", []scenarioStep{
		{add: []string{"Dup.example.com. 300 IN A 192.0.2.8", "dup.example.com. 300 IN A 192.0.2.8"}},
		{del: []string{"DUP.example.com. 300 IN A 192.0.2.8"}},
	}},
	{"held record added again, then deleted", []scenarioStep{
		{add: []string{"www.example.com. 300 IN A 192.0.2.2"}},
		{del: []string{"www.example.com. 300 IN A 192.0.2.2"}},
	}},
	// Only the net change must be storable (issue 12 item 4).
	{"type PowerDNS cannot store added, then deleted", []scenarioStep{
		{add: []string{`tmp.example.com. 300 IN TYPE65000 \# 2 abcd`, "tmp.example.com. 300 IN NSEC www.example.com. A RRSIG NSEC"}},
		{del: []string{`tmp.example.com. 300 IN TYPE65000 \# 2 abcd`, "tmp.example.com. 300 IN NSEC www.example.com. A RRSIG NSEC"},
			add: []string{"w9.example.com. 300 IN A 192.0.2.9"}},
	}},
	// "a\.e" (label "a.e") is not below e; "x\\.e" (label "x\") is.
	{"escaped backslash keeps an ENT", []scenarioStep{{del: []string{"deep.e.example.com. 300 IN A 192.0.2.42"}}}},
	{"escaped dot does not keep an ENT", []scenarioStep{{del: []string{"deep.e.example.com. 300 IN A 192.0.2.42", `x\\.e.example.com. 300 IN A 192.0.2.41`}}}},
	{"ten changes", []scenarioStep{{
		del: []string{"www.example.com. 300 IN A 192.0.2.2", "host.zone2.example.com. 300 IN A 192.0.2.6", "leaf.mid.example.com. 300 IN A 192.0.2.5"},
		add: []string{"www.example.com. 300 IN A 192.0.2.20", "w1.example.com. 300 IN A 192.0.2.21", "w2.deep.example.com. 300 IN A 192.0.2.22",
			`w3.example.com. 300 IN TXT "x"`, "w4.example.com. 300 IN MX 5 mx.example.net.", "_s._tcp.example.com. 300 IN SRV 1 2 3 t.example.net.",
			"ns2.example.com. 300 IN A 192.0.2.23"},
	}}},
}

func mustRRs(t testing.TB, text string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

// buildChange turns scenario steps into a change set and the zone it produces.
func buildChange(t testing.TB, base []dns.RR, steps []scenarioStep) (*backend.ChangeSet, []dns.RR) {
	t.Helper()
	zone := slices.Clone(base)
	cs := &backend.ChangeSet{Zone: "example.com."}
	for _, s := range steps {
		old := zone[0].(*dns.SOA)
		next := dns.Copy(old).(*dns.SOA)
		next.Serial++
		st := backend.Step{Old: old, New: next, Deleted: mustRRs(t, strings.Join(s.del, "\n")), Added: mustRRs(t, strings.Join(s.add, "\n"))}
		for _, d := range st.Deleted {
			zone = slices.DeleteFunc(zone, func(rr dns.RR) bool { return dns.IsDuplicate(rr, d) })
		}
		for _, a := range st.Added {
			zone = slices.DeleteFunc(zone, func(rr dns.RR) bool { return dns.IsDuplicate(rr, a) })
			zone = append(zone, a)
		}
		zone[0] = next
		cs.Steps = append(cs.Steps, st)
	}
	return cs, zone
}

// runScenarios applies every scenario to the base zone in one backend, creates the
// resulting version in a second one, and compares their rows.
func runScenarios(t *testing.T, newBackend func(t *testing.T) (*Backend, func() []string)) {
	base := mustRRs(t, scenarioBase)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			cs, want := buildChange(t, base, sc.steps)
			applied, dumpApplied := newBackend(t)
			if err := applied.Create(t.Context(), "example.com.", backendtest.Stream(base)); err != nil {
				t.Fatal(err)
			}
			if err := applied.Apply(t.Context(), "example.com.", cs); err != nil {
				t.Fatalf("Apply: %v\n%s", err, cs)
			}
			loaded, dumpLoaded := newBackend(t)
			if err := loaded.Create(t.Context(), "example.com.", backendtest.Stream(want)); err != nil {
				t.Fatal(err)
			}
			got, wantRows := dumpApplied(), dumpLoaded()
			if !slices.Equal(got, wantRows) {
				t.Errorf("after Apply the rows differ from a full load of the new version\n%s\napplied:\n  %s\nloaded:\n  %s",
					cs, strings.Join(got, "\n  "), strings.Join(wantRows, "\n  "))
			}
			if serial, err := applied.Serial(t.Context(), "example.com."); err != nil || serial != cs.To() {
				t.Errorf("Serial after Apply = %d, %v; want %d", serial, err, cs.To())
			}
		})
	}
}

// runInconsistent checks that change sets that do not fit are refused with
// ErrInconsistent and change nothing.
func runInconsistent(t *testing.T, newBackend func(t *testing.T) (*Backend, func() []string)) {
	base := mustRRs(t, scenarioBase)
	tests := []struct {
		name  string
		edit  func(cs *backend.ChangeSet)
		steps []scenarioStep
	}{
		{"deleted record absent", nil, []scenarioStep{{
			add: []string{"new.example.com. 300 IN A 192.0.2.99"},
			del: []string{"www.example.com. 300 IN A 192.0.2.222"},
		}}},
		{"deleted TXT differs in case", nil, []scenarioStep{{del: []string{`txt.example.com. 300 IN TXT "CASE"`}}}},
		{"wrong start serial", func(cs *backend.ChangeSet) {
			old := dns.Copy(cs.Steps[0].Old).(*dns.SOA) // the step shares its SOA with the base zone
			old.Serial = 7
			cs.Steps[0].Old = old
		}, []scenarioStep{{add: []string{"n.example.com. 300 IN A 192.0.2.1"}}}},
		{"second step deletes what is not there", nil, []scenarioStep{
			{add: []string{"n.example.com. 300 IN A 192.0.2.1"}},
			{del: []string{"n.example.com. 300 IN A 192.0.2.2"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, dump := newBackend(t)
			if err := b.Create(t.Context(), "example.com.", backendtest.Stream(base)); err != nil {
				t.Fatal(err)
			}
			before := dump()
			cs, _ := buildChange(t, base, tt.steps)
			if tt.edit != nil {
				tt.edit(cs)
			}
			if err := b.Apply(t.Context(), "example.com.", cs); !errors.Is(err, backend.ErrInconsistent) {
				t.Fatalf("Apply = %v, want ErrInconsistent", err)
			}
			if after := dump(); !slices.Equal(before, after) {
				t.Errorf("a refused change set changed the rows:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

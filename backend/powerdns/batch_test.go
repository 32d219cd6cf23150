package powerdns

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

// Apply works batch_size records (and names) at a time: with batches of 1 and 2 every
// scenario spans several batches and must leave the rows a full load writes.
func TestFakeScenariosSmallBatches(t *testing.T) {
	for _, n := range []int{1, 2} {
		newBackend := func(t *testing.T) (*Backend, func() []string) {
			cfg := testConfig()
			cfg.BatchSize = n
			b, st, _ := fakeBackend(t, cfg)
			return b, func() []string { return st.rowsOf("example.com") }
		}
		t.Run(fmt.Sprintf("batch %d", n), func(t *testing.T) {
			runScenarios(t, newBackend)
			runInconsistent(t, newBackend)
			runDuplicates(t, newBackend)
		})
	}
}

// Random changes to a zone of nested names, delegations, glue and DS records, applied
// in batches of 3 from a spooled change set, leave the rows a full load of the result
// writes: ENT rows and auth flags decided batch by batch come out as if decided at once.
func TestFakeRandomChangesInBatches(t *testing.T) {
	runRandomChanges(t, 200, func(t *testing.T) (*Backend, func() []string) {
		cfg := testConfig()
		cfg.BatchSize = 3
		b, st, _ := fakeBackend(t, cfg)
		return b, func() []string { return st.rowsOf("r.test") }
	})
}

func runRandomChanges(t *testing.T, rounds int, newBackend func(t *testing.T) (*Backend, func() []string)) {
	const zone = "r.test."
	rng := rand.New(rand.NewPCG(14, 3))
	labels := []string{"a", "b", "c"}
	name := func() string {
		var l []string
		for range 1 + rng.IntN(4) {
			l = append(l, labels[rng.IntN(len(labels))])
		}
		return strings.Join(l, ".") + "." + zone
	}
	record := func() dns.RR {
		n := name()
		var text string
		switch rng.IntN(6) {
		case 0:
			text = n + " 300 IN NS ns.example.net."
		case 1:
			text = n + " 300 IN DS 1 8 2 49fd46e6c4b45c55d4ac69cbd3cd34ac1afe51de9f6a1cfdd27b8e0f2a8f4e6a"
		case 2:
			text = fmt.Sprintf(`%s 300 IN TXT "%d"`, n, rng.IntN(3))
		default:
			text = fmt.Sprintf("%s 300 IN A 192.0.2.%d", n, rng.IntN(3))
		}
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	soa := func(serial uint32) *dns.SOA {
		return &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "ns.example.net.", Mbox: "h.example.net.", Serial: serial, Refresh: 1, Retry: 1, Expire: 1, Minttl: 1}
	}
	held := func(zone []dns.RR, rr dns.RR) bool {
		return slices.ContainsFunc(zone, func(x dns.RR) bool { return dns.IsDuplicate(x, rr) })
	}
	for round := range rounds {
		base := []dns.RR{soa(1), &dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "ns.example.net."}}
		for range 15 {
			if rr := record(); !held(base, rr) {
				base = append(base, rr)
			}
		}
		cs := &backend.ChangeSet{Zone: zone}
		cs.Spool(t.TempDir(), 1)
		cur := slices.Clone(base)
		for step := range 1 + rng.IntN(2) {
			cs.StartStep(cur[0].(*dns.SOA))
			next := []dns.RR{soa(uint32(step + 2))}
			for _, rr := range cur[1:] {
				if rng.IntN(3) == 0 && rr.Header().Name != zone {
					if err := cs.Append(rr, false); err != nil {
						t.Fatal(err)
					}
				} else {
					next = append(next, rr)
				}
			}
			for range rng.IntN(6) {
				if rr := record(); !held(next, rr) {
					next = append(next, rr)
					if err := cs.Append(rr, true); err != nil {
						t.Fatal(err)
					}
				}
			}
			cs.Steps[len(cs.Steps)-1].New = next[0].(*dns.SOA)
			cur = next
		}
		applied, dumpApplied := newBackend(t)
		loaded, dumpLoaded := newBackend(t)
		if err := applied.Create(t.Context(), zone, backendtest.Stream(base)); err != nil {
			t.Fatal(err)
		}
		if err := loaded.Create(t.Context(), zone, backendtest.Stream(cur)); err != nil {
			t.Fatal(err)
		}
		if err := applied.Apply(t.Context(), zone, cs); err != nil {
			t.Fatalf("round %d: Apply: %v\n%s", round, err, cs)
		}
		if got, want := dumpApplied(), dumpLoaded(); !slices.Equal(got, want) {
			t.Fatalf("round %d: after Apply the rows differ from a full load of the new version\n%s\napplied:\n  %s\nloaded:\n  %s",
				round, cs, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		cs.Close()
	}
}

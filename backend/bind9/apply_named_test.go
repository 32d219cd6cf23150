package bind9_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/bind9"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/tests/harness"
)

// step builds a change-set step from serial old to new.
func step(t testing.TB, old, new uint32, deleted, added []string) backend.Step {
	s := backend.Step{Old: soa(t, old), New: soa(t, new)}
	for _, d := range deleted {
		s.Deleted = append(s.Deleted, rr(t, d))
	}
	for _, a := range added {
		s.Added = append(s.Added, rr(t, a))
	}
	return s
}

// applyCases go one after the other from testZone(t, 1); each is a change a primary can
// make that an UPDATE has to be ordered carefully for.
func applyCases(t testing.TB) []struct {
	name string
	cs   *backend.ChangeSet
} {
	z := zone
	return []struct {
		name string
		cs   *backend.ChangeSet
	}{
		{"records moved, CNAME to A", &backend.ChangeSet{Zone: z, Steps: []backend.Step{step(t, 1, 2,
			[]string{"foo_bar." + z + " 300 IN A 192.0.2.1", "www." + z + " 300 IN CNAME foo_bar." + z},
			[]string{"foo_bar." + z + " 300 IN A 192.0.2.2", "www." + z + " 300 IN A 192.0.2.80", "new." + z + " 60 IN AAAA 2001:db8::1"})}}},
		{"several steps in one change set", &backend.ChangeSet{Zone: z, Steps: []backend.Step{
			step(t, 2, 3, nil, []string{"x." + z + " 300 IN A 192.0.2.9"}),
			step(t, 3, 4, []string{"x." + z + " 300 IN A 192.0.2.9"}, []string{"y." + z + ` 300 IN TXT "after x"`}),
		}}},
		{"apex NS set replaced", &backend.ChangeSet{Zone: z, Steps: []backend.Step{step(t, 4, 5,
			[]string{z + " 3600 IN NS ns1." + z},
			[]string{z + " 3600 IN NS ns2." + z, "ns2." + z + " 3600 IN A 192.0.2.54"})}}},
		{"apex NS TTL change", &backend.ChangeSet{Zone: z, Steps: []backend.Step{step(t, 5, 6,
			[]string{z + " 3600 IN NS ns2." + z},
			[]string{z + " 7200 IN NS ns2." + z, z + " 7200 IN NS ns1." + z})}}},
		{"TTL change", &backend.ChangeSet{Zone: z, Steps: []backend.Step{step(t, 6, 7,
			[]string{"txt." + z + ` 300 IN TXT "semi;colon" "quote\"inside" "back\\slash"`},
			[]string{"txt." + z + ` 900 IN TXT "semi;colon" "quote\"inside" "back\\slash"`})}}},
		{"AAAA to CNAME", &backend.ChangeSet{Zone: z, Steps: []backend.Step{step(t, 7, 8,
			[]string{"new." + z + " 60 IN AAAA 2001:db8::1"},
			[]string{"new." + z + " 60 IN CNAME www." + z})}}},
	}
}

// TestApply applies change sets in both modes and compares what named serves (AXFR) with
// the memory backend given the same change sets. In update mode named must not reload.
func TestApply(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{bind9.ModeReload, bind9.ModeUpdate} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b, n := setup(t, mode, harness.BackendOptions{})
			oracle := memory.New()
			for _, be := range []backend.Backend{b, oracle} {
				if err := be.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range applyCases(t) {
				mark := len(n.Output())
				if err := b.Apply(t.Context(), zone, tc.cs); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if err := oracle.Apply(t.Context(), zone, tc.cs); err != nil {
					t.Fatalf("%s: oracle: %v", tc.name, err)
				}
				if s, err := n.Serial(zone); err != nil || s != tc.cs.To() {
					t.Fatalf("%s: named serves serial %d (%v), want %d", tc.name, s, err, tc.cs.To())
				}
				want, _ := oracle.Records(zone)
				got, err := n.AXFRSet(zone)
				if err != nil {
					t.Fatal(err)
				}
				if d := harness.DiffSets(harness.Canonical(want), got, 10); d != "" {
					t.Fatalf("%s: named serves other records than the change set makes: %s", tc.name, d)
				}
				if mode == bind9.ModeReload {
					if !n.WaitLog(mark, fmt.Sprintf("zone example.com/IN: loaded serial %d", tc.cs.To()), 2*time.Second) {
						t.Errorf("%s: in reload mode named should reload; its log:\n%s", tc.name, n.Output()[mark:])
					}
					continue
				}
				// The new SOA is the last record of the UPDATE: once named logged it, the
				// update is done, and no load may have come with it.
				lastSOA := fmt.Sprintf("adding an RR at 'example.com' SOA ns1.example.com. hostmaster.example.com. %d ", tc.cs.To())
				if !n.WaitLog(mark, lastSOA, 2*time.Second) || strings.Contains(n.Output()[mark:], fmt.Sprintf("loaded serial %d", tc.cs.To())) {
					t.Errorf("%s: in update mode named should take an UPDATE and not reload; its log:\n%s", tc.name, n.Output()[mark:])
				}
			}
		})
	}
}

// A change set that does not start at the zone's serial is ErrInconsistent and changes
// nothing; the engine then falls back to a full transfer.
func TestApplyInconsistent(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{bind9.ModeReload, bind9.ModeUpdate} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b, n := setup(t, mode, harness.BackendOptions{})
			if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 10))); err != nil {
				t.Fatal(err)
			}
			before, _ := n.AXFRSet(zone)
			cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{step(t, 9, 11, nil, []string{"x." + zone + " 300 IN A 192.0.2.9"})}}
			if err := b.Apply(t.Context(), zone, cs); !errors.Is(err, backend.ErrInconsistent) {
				t.Fatalf("Apply from serial 9 to a zone at 10: %v, want ErrInconsistent", err)
			}
			after, _ := n.AXFRSet(zone)
			if d := harness.DiffSets(before, after, 5); d != "" {
				t.Errorf("the refused change set changed the zone: %s", d)
			}
			other := "other.test."
			missing := &backend.ChangeSet{Zone: other, Steps: []backend.Step{{Old: backendtest.Zone(other, 1, 0)[0].(*dns.SOA), New: backendtest.Zone(other, 2, 0)[0].(*dns.SOA)}}}
			if err := b.Apply(t.Context(), other, missing); !errors.Is(err, backend.ErrNotFound) {
				t.Errorf("Apply to a missing zone: %v, want ErrNotFound", err)
			}
		})
	}
}

// bigStep adds n TXT records of about 200 bytes each: with n = 500 the UPDATE is over
// 64 KiB.
func bigStep(t testing.TB, old, new uint32, n int) backend.Step {
	var added []string
	for i := range n {
		added = append(added, fmt.Sprintf(`big-%d.%s 300 IN TXT "%s"`, i, zone, strings.Repeat("x", 200)))
	}
	return step(t, old, new, nil, added)
}

// A step too big for one UPDATE goes through freeze, the file and thaw; the zone is
// dynamic again afterwards, and a full replace of a zone with a journal converges too.
func TestUpdateModeFileFallbacks(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
		t.Fatal(err)
	}
	small := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{step(t, 1, 2, nil, []string{"x." + zone + " 300 IN A 192.0.2.9"})}}
	if err := b.Apply(t.Context(), zone, small); err != nil {
		t.Fatal(err)
	}
	// named now has a journal and has not written serial 2 to the zone file: the freeze
	// must wait for named's dump before the patched file goes in.
	big := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{bigStep(t, 2, 3, 500)}}
	mark := len(n.Output())
	if err := b.Apply(t.Context(), zone, big); err != nil {
		t.Fatal(err)
	}
	if !n.WaitLog(mark, "freezing zone 'example.com/IN'", 2*time.Second) || !n.WaitLog(mark, "thawing zone 'example.com/IN'", 2*time.Second) {
		t.Errorf("a change set over 64 KiB should go through rndc freeze/thaw; named's log:\n%s", n.Output()[mark:])
	}
	served(t, n, append(big.Steps[0].Added[:1], big.Steps[0].Added[499], small.Steps[0].Added[0]))
	if s, _ := n.Serial(zone); s != 3 {
		t.Fatalf("serial %d after the big step, want 3", s)
	}

	// Dynamic again: a small change goes as an UPDATE.
	small2 := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{step(t, 3, 4, []string{"x." + zone + " 300 IN A 192.0.2.9"}, nil)}}
	mark = len(n.Output())
	if err := b.Apply(t.Context(), zone, small2); err != nil {
		t.Fatal(err)
	}
	if !n.WaitLog(mark, "hostmaster.example.com. 4 ", 2*time.Second) || strings.Contains(n.Output()[mark:], "loaded serial 4") {
		t.Errorf("after thaw a small change should be an UPDATE; named's log:\n%s", n.Output()[mark:])
	}

	// The primary lost its journal: a full replace, with a journal in place.
	full := testZone(t, 20)
	if err := b.Replace(t.Context(), zone, backendtest.Stream(full)); err != nil {
		t.Fatal(err)
	}
	got, _ := n.AXFRSet(zone)
	if d := harness.DiffSets(harness.Canonical(full), got, 5); d != "" {
		t.Fatalf("after the full replace: %s", d)
	}
	if _, err := os.Stat(filepath.Join(n.ZoneDir(), "example.com.zone.jnl")); err == nil {
		t.Error("the old journal survived the full replace")
	}
	small3 := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{step(t, 20, 21, nil, []string{"z." + zone + " 300 IN A 192.0.2.10"})}}
	if err := b.Apply(t.Context(), zone, small3); err != nil {
		t.Fatal(err)
	}
	served(t, n, small3.Steps[0].Added)
}

// checkNoTemps fails if a temp file of the agent is left in dir.
func checkNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "~") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestNoTempFilesLeft(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(t.Context(), zone, backendtest.FailingStream(errors.New("cut"), testZone(t, 2))); err == nil {
		t.Fatal("Replace from a failing stream succeeded")
	}
	if err := b.Apply(t.Context(), zone, &backend.ChangeSet{Zone: zone, Steps: []backend.Step{bigStep(t, 1, 2, 500)}}); err != nil {
		t.Fatal(err)
	}
	checkNoTemps(t, n.ZoneDir())
}

// Why every UPDATE carries the new SOA: named increments the serial itself after an
// update that does not set it, and would then no longer match the primary.
func TestNamedIncrementsSerialWithoutSOA(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 100))); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Insert([]dns.RR{rr(t, "plain."+zone+" 300 IN A 192.0.2.99")})
	m.SetTsig(harness.UpdateKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
	c := dns.Client{Net: "tcp", TsigSecret: map[string]string{harness.UpdateKeyName + ".": n.UpdateSecret}}
	r, _, err := c.Exchange(m, n.Addr())
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("UPDATE without SOA: %v %v", err, r)
	}
	if s, _ := n.Serial(zone); s != 101 {
		t.Fatalf("after an UPDATE without SOA named serves serial %d; this test expects named's own increment to 101", s)
	}
	// With the SOA, named takes the primary's serial, even one far ahead.
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{step(t, 101, 5000, nil, []string{"x." + zone + " 300 IN A 192.0.2.9"})}}
	if err := b.Apply(t.Context(), zone, cs); err != nil {
		t.Fatal(err)
	}
	if s, _ := n.Serial(zone); s != 5000 {
		t.Errorf("named serves %d, want the change set's 5000", s)
	}
}

// A dynamic zone left frozen (the agent killed between rndc freeze and thaw) does not stay
// stuck: the next file load takes the freeze as done, and thaws the zone, which takes
// UPDATEs again.
func TestUpdateModeZoneLeftFrozen(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Rndc("freeze", strings.TrimSuffix(zone, ".")); err != nil {
		t.Fatalf("rndc freeze: %v: %s", err, out)
	}
	big := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{bigStep(t, 1, 2, 500)}} // over 64 KiB: the file path
	if err := b.Apply(t.Context(), zone, big); err != nil {
		t.Fatalf("Apply to a zone left frozen: %v", err)
	}
	if s, _ := n.Serial(zone); s != 2 {
		t.Fatalf("serial %d after the load, want 2", s)
	}
	small := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{step(t, 2, 3, nil, []string{"x." + zone + " 300 IN A 192.0.2.9"})}}
	mark := len(n.Output())
	if err := b.Apply(t.Context(), zone, small); err != nil {
		t.Fatal(err)
	}
	if !n.WaitLog(mark, "hostmaster.example.com. 3 ", 2*time.Second) {
		t.Errorf("after the load a small change should be an UPDATE (the zone thawed); named's log:\n%s", n.Output()[mark:])
	}
}

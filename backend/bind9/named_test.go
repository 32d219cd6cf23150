package bind9_test

// Tests against a real named (tests/harness.StartBackendNamed): every claim about what
// named does is checked here, not against a fake.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/bind9"
	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/dnsagent/dnsagent/tsigkey"
)

// setup starts a backend named and opens a bind9 backend on it in the given mode.
func setup(t testing.TB, mode string, opts harness.BackendOptions) (*bind9.Backend, *harness.BackendNamed) {
	t.Helper()
	harness.Require(t, "named", "rndc")
	n := harness.StartBackendNamed(t, opts)
	return open(t, n, mode), n
}

func open(t testing.TB, n *harness.BackendNamed, mode string) *bind9.Backend {
	t.Helper()
	cfg := bind9.Config{
		RNDCHost:         "127.0.0.1",
		RNDCPort:         n.ControlPort(),
		RNDCKeyFile:      n.RNDCKeyFile(),
		RNDCTimeout:      10 * time.Second,
		RNDCBinary:       harness.LookPath("rndc"),
		ZoneFilePath:     n.ZoneDir(),
		FileMode:         bind9.DefaultFileMode,
		QueryDestination: n.Addr(),
		UpdateMode:       mode,
		UpdateKey:        &tsigkey.Key{Name: harness.UpdateKeyName + ".", Algorithm: dns.HmacSHA256, Secret: n.UpdateSecret},
	}
	b, err := bind9.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformanceReloadMode(t *testing.T) {
	t.Parallel()
	backendtest.RunWith(t, func(t *testing.T) backend.Backend {
		b, n := setup(t, bind9.ModeReload, harness.BackendOptions{})
		return glued{b, n}
	}, backendtest.Options{Contents: namedContents})
}

func TestConformanceUpdateMode(t *testing.T) {
	t.Parallel()
	// named ignores the deletion of a record the zone lacks (RFC 2136 §3.4.2.4), so
	// update mode cannot refuse such a change set; reload mode, patching the file, does.
	backendtest.RunWith(t, func(t *testing.T) backend.Backend {
		b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
		return glued{b, n}
	}, backendtest.Options{LenientDeletes: true, Contents: namedContents})
}

// namedContents is what named serves of the zone (by AXFR), without the glue glued adds.
func namedContents(t *testing.T, b backend.Backend, zone string) []dns.RR {
	t.Helper()
	m := new(dns.Msg).SetAxfr(zone)
	envelopes, err := new(dns.Transfer).In(m, b.(glued).n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for env := range envelopes {
		if env.Error != nil {
			t.Fatalf("AXFR %s from named: %v", zone, env.Error)
		}
		for _, rr := range env.RR {
			if a, ok := rr.(*dns.A); ok && a.Hdr.Name == "ns1."+zone && a.A.String() == "192.0.2.53" {
				continue
			}
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) > 1 {
		rrs = rrs[:len(rrs)-1] // the closing SOA
	}
	return rrs
}

// glued adapts the conformance suite's zones to named: their apex NS is ns1.<zone>, which
// has no address record, and named refuses to load a primary zone whose in-zone NS has
// none (check-integrity no does not turn that off; see TestCreateRefusedByNamedLeavesNothing).
// It adds the glue after a stream's opening SOA and changes nothing else.
type glued struct {
	*bind9.Backend
	n *harness.BackendNamed
}

func (g glued) Create(ctx context.Context, zone string, src backend.Source) error {
	return g.Backend.Create(ctx, zone, &glueSource{Source: src, zone: zone})
}

func (g glued) Replace(ctx context.Context, zone string, src backend.Source) error {
	return g.Backend.Replace(ctx, zone, &glueSource{Source: src, zone: zone})
}

type glueSource struct {
	backend.Source
	zone string
	done bool
}

func (s *glueSource) Next() ([]dns.RR, error) {
	batch, err := s.Source.Next()
	if s.done || len(batch) == 0 {
		return batch, err
	}
	s.done = true
	if soa, ok := batch[0].(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, s.zone) {
		glue := &dns.A{Hdr: dns.RR_Header{Name: "ns1." + s.zone, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: net.IPv4(192, 0, 2, 53)}
		batch = append(slices.Clone(batch), glue)
	}
	return batch, err
}

const zone = "example.com."

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func soa(t testing.TB, serial uint32) *dns.SOA {
	return rr(t, fmt.Sprintf("%s 3600 IN SOA ns1.%s hostmaster.%s %d 3600 600 86400 300", zone, zone, zone, serial)).(*dns.SOA)
}

// testZone is a small zone with the names a BIND primary would refuse without
// check-names ignore, and data that is easy to get wrong in a zone file.
func testZone(t testing.TB, serial uint32) []dns.RR {
	return []dns.RR{
		soa(t, serial),
		rr(t, zone+" 3600 IN NS ns1."+zone),
		rr(t, "ns1."+zone+" 3600 IN A 192.0.2.53"),
		rr(t, "foo_bar."+zone+" 300 IN A 192.0.2.1"),
		rr(t, "_sip._tcp."+zone+" 300 IN SRV 10 5 5060 sip."+zone),
		rr(t, "txt."+zone+` 300 IN TXT "semi;colon" "quote\"inside" "back\\slash"`),
		rr(t, "www."+zone+" 300 IN CNAME foo_bar."+zone),
	}
}

// served asks named for every record of rrs and checks it answers authoritatively with it.
func served(t *testing.T, n *harness.BackendNamed, rrs []dns.RR) {
	t.Helper()
	for _, want := range rrs {
		h := want.Header()
		r := n.Query(t, h.Name, h.Rrtype)
		if !r.Authoritative || r.Rcode != dns.RcodeSuccess {
			t.Errorf("%s %s: rcode %s aa=%v, want an authoritative answer", h.Name, dns.TypeToString[h.Rrtype], dns.RcodeToString[r.Rcode], r.Authoritative)
			continue
		}
		if !slices.ContainsFunc(r.Answer, func(got dns.RR) bool { return dns.IsDuplicate(got, want) }) {
			t.Errorf("named does not answer %s; answer: %v", want, r.Answer)
		}
	}
}

func TestNamedServesWhatWasCreated(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{bind9.ModeReload, bind9.ModeUpdate} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b, n := setup(t, mode, harness.BackendOptions{})
			want := testZone(t, 7)
			if err := b.Create(t.Context(), zone, backendtest.Stream(want[:3], want[3:])); err != nil {
				t.Fatal(err)
			}
			served(t, n, want)
			st, err := os.Stat(filepath.Join(n.ZoneDir(), "example.com.zone"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("zone file mode %v, want 0644", st.Mode().Perm())
			}
			out, err := n.Rndc("showzone", "example.com")
			if err != nil {
				t.Fatalf("showzone: %v: %s", err, out)
			}
			for _, clause := range []string{"check-names ignore", "check-integrity no", `file "` + n.ZoneDir()} {
				if !strings.Contains(out, clause) {
					t.Errorf("showzone %q lacks %q", out, clause)
				}
			}
			if dynamic := strings.Contains(out, "update-policy"); dynamic != (mode == bind9.ModeUpdate) {
				t.Errorf("update-policy in the zone's config: %v in %s mode: %s", dynamic, mode, out)
			}

			// A full replace: foo_bar moves, www goes, a new name comes.
			next := append(testZone(t, 8)[:3], rr(t, "foo_bar."+zone+" 300 IN A 192.0.2.2"), rr(t, "new."+zone+" 60 IN AAAA 2001:db8::1"))
			if err := b.Replace(t.Context(), zone, backendtest.Stream(next)); err != nil {
				t.Fatal(err)
			}
			served(t, n, next)
			if r := n.Query(t, "www."+zone, dns.TypeCNAME); r.Rcode != dns.RcodeNameError {
				t.Errorf("www after the replace: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

// A zone named.conf defines is not the agent's: no serial, no create, no delete, and named
// still serves it afterwards.
func TestZoneDefinedInNamedConfIsNotOwned(t *testing.T) {
	t.Parallel()
	static := "static.test."
	text := fmt.Sprintf("%s 300 IN SOA ns.%s h.%s 5 1 1 1 1\n%s 300 IN NS ns.%s\nns.%s 300 IN A 192.0.2.1\n", static, static, static, static, static, static)
	b, n := setup(t, bind9.ModeReload, harness.BackendOptions{StaticZones: map[string]string{static: text}})
	if _, err := b.Serial(t.Context(), static); !errors.Is(err, backend.ErrNotOwned) {
		t.Errorf("Serial: %v, want ErrNotOwned", err)
	}
	src := backendtest.Stream(backendtest.Zone(static, 6, 3))
	if err := b.Create(t.Context(), static, src); !errors.Is(err, backend.ErrNotOwned) {
		t.Errorf("Create: %v, want ErrNotOwned", err)
	}
	if err := b.Delete(t.Context(), static); !errors.Is(err, backend.ErrNotOwned) {
		t.Errorf("Delete: %v, want ErrNotOwned", err)
	}
	if s, err := n.Serial(static); err != nil || s != 5 {
		t.Errorf("named serves %s at %d (%v), want 5", static, s, err)
	}
	if zones, _ := b.Zones(t.Context()); len(zones) != 0 {
		t.Errorf("Zones() = %v", zones)
	}
}

// named refuses to load a primary zone whose in-zone NS has no address, whatever
// check-integrity says: the create fails with rndc's message and leaves no file.
func TestCreateRefusedByNamedLeavesNothing(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeReload, harness.BackendOptions{})
	broken := []dns.RR{soa(t, 1), rr(t, zone+" 3600 IN NS ns1."+zone)}
	err := b.Create(t.Context(), zone, backendtest.Stream(broken))
	if err == nil || !strings.Contains(err.Error(), "bad zone") {
		t.Fatalf("Create: %v, want rndc's 'bad zone'", err)
	}
	if entries, _ := os.ReadDir(n.ZoneDir()); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 2))); err != nil {
		t.Fatalf("Create after the refused one: %v", err)
	}
}

// Delete removes the zone from named and every file, journal included.
func TestDeleteRemovesJournal(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
		t.Fatal(err)
	}
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(t, 1), New: soa(t, 2), Added: []dns.RR{rr(t, "x."+zone+" 300 IN A 192.0.2.9")}}}}
	if err := b.Apply(t.Context(), zone, cs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.ZoneDir(), "example.com.zone.jnl")); err != nil {
		t.Fatalf("no journal after an update: %v", err)
	}
	if err := b.Delete(t.Context(), zone); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(n.ZoneDir()); len(entries) != 0 {
		t.Errorf("files left after Delete: %v", entries)
	}
	if r := n.Query(t, zone, dns.TypeSOA); r.Rcode != dns.RcodeRefused {
		t.Errorf("SOA after Delete: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if out, err := n.Rndc("showzone", "example.com"); err == nil {
		t.Errorf("named still has the zone: %s", out)
	}
}

// After a named restart, zones added with addzone come back (NZD), a new backend (an
// agent restart) recognises them as its own, and they keep updating.
func TestRestartsKeepZones(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	b2 := open(t, n, bind9.ModeUpdate)
	if s, err := b2.Serial(t.Context(), zone); err != nil || s != 1 {
		t.Fatalf("Serial after restarts: %d, %v", s, err)
	}
	if zones, err := b2.Zones(t.Context()); err != nil || !slices.Equal(zones, []string{zone}) {
		t.Fatalf("Zones() = %v, %v", zones, err)
	}
	if err := b2.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err == nil {
		t.Error("Create of the existing zone succeeded")
	}
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(t, 1), New: soa(t, 2), Added: []dns.RR{rr(t, "x."+zone+" 300 IN A 192.0.2.9")}}}}
	if err := b2.Apply(t.Context(), zone, cs); err != nil {
		t.Fatal(err)
	}
	served(t, n, cs.Steps[0].Added)
}

// Zones keep working when update_mode changes after they were created: a zone without an
// update-policy refuses the UPDATE and takes the change through its file, and a dynamic
// zone in reload mode goes through freeze and thaw.
func TestModeSwitch(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	n := harness.StartBackendNamed(t, harness.BackendOptions{})
	reload, update := open(t, n, bind9.ModeReload), open(t, n, bind9.ModeUpdate)
	for _, tc := range []struct {
		name              string
		createdBy, nowBy  *bind9.Backend
		zone, wantInNamed string
	}{
		{"reload to update", reload, update, "one.test.", "zone one.test/IN: loaded serial 2"},
		{"update to reload", update, reload, "two.test.", "thawing zone 'two.test/IN'"},
	} {
		z := tc.zone
		glue := rr(t, "ns1."+z+" 3600 IN A 192.0.2.53")
		if err := tc.createdBy.Create(t.Context(), z, backendtest.Stream(append(backendtest.Zone(z, 1, 4), glue))); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mark := len(n.Output())
		added := rr(t, "new."+z+" 300 IN A 192.0.2.77")
		cs := &backend.ChangeSet{Zone: z, Steps: []backend.Step{{
			Old: backendtest.Zone(z, 1, 0)[0].(*dns.SOA), New: backendtest.Zone(z, 2, 0)[0].(*dns.SOA), Added: []dns.RR{added},
		}}}
		if err := tc.nowBy.Apply(t.Context(), z, cs); err != nil {
			t.Fatalf("%s: Apply: %v", tc.name, err)
		}
		served(t, n, []dns.RR{added})
		if err := tc.nowBy.Replace(t.Context(), z, backendtest.Stream(append(backendtest.Zone(z, 3, 6), glue))); err != nil {
			t.Fatalf("%s: Replace: %v", tc.name, err)
		}
		if s, err := n.Serial(z); err != nil || s != 3 {
			t.Errorf("%s: serial %d (%v) after the replace, want 3", tc.name, s, err)
		}
		if !n.WaitLog(mark, tc.wantInNamed, 2*time.Second) {
			t.Errorf("%s: named's log lacks %q:\n%s", tc.name, tc.wantInNamed, n.Output()[mark:])
		}
	}
}

// named has the zone but cannot load it (its file was lost): the zone is not served, so
// it is not found, and a CREATE puts it back.
func TestCreateHealsZoneNamedCannotLoad(t *testing.T) {
	t.Parallel()
	b, n := setup(t, bind9.ModeUpdate, harness.BackendOptions{})
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 1))); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(n.ZoneDir(), "example.com.zone")); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	b = open(t, n, bind9.ModeUpdate)
	if _, err := b.Serial(t.Context(), zone); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Serial of a zone named cannot load: %v, want ErrNotFound", err)
	}
	if err := b.Create(t.Context(), zone, backendtest.Stream(testZone(t, 2))); err != nil {
		t.Fatalf("Create: %v", err)
	}
	served(t, n, testZone(t, 2))
}

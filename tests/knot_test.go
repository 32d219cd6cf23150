package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Issue 12, acceptance 1: Knot DNS and NSD as the primary. Each serves the zone and
// notifies the agent itself; the agent CREATEs the zone, then follows a change: by a real
// IXFR from Knot (its journal holds the difference) and by the whole zone from NSD, which
// answers IXFR with an AXFR-style reply ("IXFR-full").
func TestPrimaryKnotNSD(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		start func(testing.TB, harness.ServerOptions) *harness.Server
		xfr   string // transfer type of the change
	}{
		{"knot", harness.StartKnot, "IXFR"},
		{"nsd", harness.StartNSD, "IXFR-full"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
			z := harness.NewZone(zone, 2024120101, 2000)
			s := c.start(t, harness.ServerOptions{Zones: map[string]string{zone: z.Text()}, Notify: []string{listen}})
			a := harness.StartAgent(t, harness.AgentConfig{Listen: listen, Masters: s.Addr(), AllowNotify: "127.0.0.1",
				Service: map[string]string{"log_format": "json"}})
			create(t, a, 0x1201)
			sameAsServer(t, s, a, z.Serial, "after the CREATE")

			// No NOTIFY from the test: the primary's own must bring the change (the SOA
			// refresh is an hour away).
			z = z.Next(50, 70)
			s.SetZone(t, zone, z.Text())
			if _, ok := xfrWaitSerial(a, zone, z.Serial, 10*time.Second); !ok {
				t.Fatalf("%s's NOTIFY did not bring serial %d within 10 s; %s output:\n%s", c.name, z.Serial, c.name, s.Output())
			}
			expectTransfer(t, a, z.Serial, c.xfr, "")
			sameAsServer(t, s, a, z.Serial, "after "+c.xfr)
			if c.xfr == "IXFR-full" {
				// NSD sends the whole zone; the agent applies only its difference (issue 13):
				// records 0-49 gone (56 RRs), 2000-2069 new (78 RRs).
				wantDiff(t, a, z.Serial, 56, 78)
			} else if logged, _ := lastApply(t, a, z.Serial); logged.Apply != "ixfr" {
				t.Errorf("the IXFR was applied as %+v, want ixfr", logged)
			}
			if c.name == "knot" && !strings.Contains(s.Output(), "IXFR, outgoing") {
				t.Errorf("knotd did not log an outgoing IXFR")
			}
		})
	}
}

// Issue 12, acceptance 2 (the Knot half): TSIG-signed transfers many messages long, with
// each algorithm. Knot signs every message of a multi-message transfer (RFC 8945 §5.3.1);
// the agent must verify them all: an AXFR of 20,000 records, then an IXFR of 6,000 changes
// after Knot's own NOTIFY.
func TestTSIGKnotLargeZone(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"hmac-sha1", "hmac-sha256", "hmac-sha512"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			key := harness.NewTSIGKey(t, "knot-"+alg, alg)
			listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
			z := harness.NewZone(zone, 2024120201, 20000)
			s := harness.StartKnot(t, harness.ServerOptions{Zones: map[string]string{zone: z.Text()},
				Notify: []string{listen}, TSIG: &key})
			if _, err := harness.AXFR(s.Addr(), zone); err == nil {
				t.Fatalf("test setup: knotd serves an unsigned AXFR")
			}
			a := harness.StartAgent(t, harness.AgentConfig{Listen: listen, Masters: s.Addr(), AllowNotify: "127.0.0.1",
				Service:  map[string]string{"log_format": "json", "masters_tsig_key": key.Name},
				Sections: key.Section()})
			create(t, a, 0x1202)
			sameAsServer(t, s, a, z.Serial, "after the signed AXFR")
			if l, ok := xfrTransferTo(a, zone, z.Serial); !ok || l.Type != "AXFR" || l.Records < 20000 {
				t.Errorf("transfer to %d: %+v (found %v), want an AXFR of 20,000 records or more", z.Serial, l, ok)
			}

			z = z.Next(3000, 3000)
			s.SetZone(t, zone, z.Text())
			if _, ok := xfrWaitSerial(a, zone, z.Serial, 20*time.Second); !ok {
				t.Fatalf("serial %d not applied after knotd's NOTIFY; agent output:\n%s", z.Serial, a.Output())
			}
			expectTransfer(t, a, z.Serial, "IXFR", "")
			sameAsServer(t, s, a, z.Serial, "after the signed IXFR")
			if !strings.Contains(s.Output(), "IXFR, outgoing") {
				t.Errorf("knotd did not log an outgoing IXFR")
			}
		})
	}
}

// sameAsServer checks that the agent's file holds serial and exactly what s serves.
func sameAsServer(t *testing.T, s *harness.Server, a *harness.Agent, serial uint32, when string) {
	t.Helper()
	if got, ok := xfrFileSerial(a.ZoneFile(zone), zone); !ok || got != serial {
		t.Fatalf("%s: the agent's file has serial %d (%v), want %d", when, got, ok, serial)
	}
	want := harness.AXFRSet(s.AXFR(t, zone))
	if d := harness.DiffSets(want, harness.MustZoneFileSet(t, a.ZoneFile(zone), bogusOrigin), 5); d != "" {
		t.Errorf("%s: the agent's file differs from the primary: %s", when, d)
	}
}

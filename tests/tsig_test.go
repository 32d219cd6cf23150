package tests

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

// End-to-end tests of issue 12, item 1: TSIG-signed transfers longer than one message.
// named sends a transfer in messages of about 20 KB (transfer-message-size), each signed,
// the later ones over the previous MAC and the timers only (RFC 8945 §5.3.1).

// tsigZoneSet is the record set of a generated zone version, as the agent must hold it.
func tsigZoneSet(t *testing.T, z harness.Zone) []string {
	t.Helper()
	rrs, err := harness.ParseZoneText(z.Text(), z.Origin())
	if err != nil {
		t.Fatal(err)
	}
	return harness.Canonical(rrs)
}

// tsigPrimary starts named serving z to the given keys only, and checks that an unsigned
// AXFR is refused.
func tsigPrimary(t *testing.T, z harness.Zone, keys ...harness.TSIGKey) *harness.Primary {
	t.Helper()
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: map[string]string{zone: z.Text()},
		IXFRFromDifferences: true, TransferKeys: keys})
	if _, err := harness.AXFR(p.Addr(), zone); err == nil {
		t.Fatalf("test setup: the primary serves an unsigned AXFR")
	}
	return p
}

func tsigAgent(t *testing.T, master string, k harness.TSIGKey) *harness.Agent {
	t.Helper()
	return harness.StartAgent(t, harness.AgentConfig{Masters: master, AllowNotify: "127.0.0.1",
		Service: map[string]string{"log_format": "json", "masters_tsig_key": k.Name}, Sections: k.Section()})
}

// Acceptance 2: a 20,000-record zone (about 50 signed messages) by AXFR, then a change of
// 6,000 records by IXFR (about 15 messages), with hmac-sha1, hmac-sha256 and hmac-sha512:
// one named that transfers only to the three keys, one agent per key.
func TestTSIGMultiMessageFromBIND(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	keys := []harness.TSIGKey{
		harness.NewTSIGKey(t, "xfr-sha1", "hmac-sha1"),
		harness.NewTSIGKey(t, "xfr-sha256", "hmac-sha256"),
		harness.NewTSIGKey(t, "xfr-sha512", "hmac-sha512"),
	}
	z := harness.NewZone(zone, 2024120101, 20_000)
	p := tsigPrimary(t, z, keys...)
	agents := make([]*harness.Agent, len(keys))
	for i, k := range keys {
		agents[i] = tsigAgent(t, p.Addr(), k)
	}

	// The three CREATEs run at once: each is one AXFR.
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() {
			start := time.Now()
			create(t, a, 0x1201+uint16(i))
			t.Logf("%s: CREATE (signed AXFR of %d records) took %v", keys[i].Algorithm, z.Count, time.Since(start))
		})
	}
	wg.Wait()
	want := tsigZoneSet(t, z)
	for i, a := range agents {
		if d := harness.DiffSets(want, harness.MustZoneFileSet(t, a.ZoneFile(zone), bogusOrigin), 5); d != "" {
			t.Errorf("%s: after the signed AXFR: %s", keys[i].Algorithm, d)
		}
	}
	if n := strings.Count(p.Output(), "AXFR started: TSIG "); n != len(keys) {
		t.Errorf("named logged %d TSIG-signed AXFRs, want %d", n, len(keys))
	}
	if t.Failed() {
		t.FailNow()
	}

	z2 := z.Next(3000, 3000)
	p.SetZone(t, zone, z2.Text())
	for i, a := range agents {
		notify(t, a, 0x1211+uint16(i))
	}
	want = tsigZoneSet(t, z2)
	for i, a := range agents {
		if _, ok := xfrWaitSerial(a, zone, z2.Serial, 20*time.Second); !ok {
			st, _ := xfrZoneStatus(t, a, zone)
			t.Errorf("%s: zone not updated to %d over the signed IXFR: %v", keys[i].Algorithm, z2.Serial, st)
			continue
		}
		if l, ok := xfrTransferTo(a, zone, z2.Serial); !ok || l.Type != "IXFR" {
			t.Errorf("%s: transfer to %d: %+v (found %v), want an IXFR", keys[i].Algorithm, z2.Serial, l, ok)
		} else {
			t.Logf("%s: signed IXFR of %d records took %.0f ms", keys[i].Algorithm, l.Records, l.Transfer*1000)
		}
		if d := harness.DiffSets(want, harness.MustZoneFileSet(t, a.ZoneFile(zone), bogusOrigin), 5); d != "" {
			t.Errorf("%s: after the signed IXFR: %s", keys[i].Algorithm, d)
		}
	}
	if n := strings.Count(p.Output(), "IXFR started: TSIG "); n != len(keys) {
		t.Errorf("named logged %d TSIG-signed IXFRs, want %d", n, len(keys))
	}
}

// stripTSIG removes the TSIG record from a message (as a middlebox or an attacker might).
func stripTSIG(msg []byte) []byte {
	m := new(dns.Msg)
	if m.Unpack(msg) != nil || m.IsTsig() == nil {
		return msg
	}
	m.Extra = m.Extra[:len(m.Extra)-1]
	out, err := m.Pack()
	if err != nil {
		return msg
	}
	return out
}

// Acceptance 2: a signed stream from named that a proxy tampers with is refused, AXFR and
// IXFR alike, the zone keeps its old version, and /zones/NAME and the log say why: a bit
// flipped in the second message (its MAC fails), or the TSIG stripped from every message
// after the first (the stream ends unsigned: RFC 8945 §5.3.1 wants the last one signed).
// Once the proxy passes the stream untouched the new version arrives.
func TestTSIGTamperedStreamKeepsOldZone(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	key := harness.NewTSIGKey(t, "xfr-key", "hmac-sha256")
	z := harness.NewZone(zone, 2024120201, 5000)
	p := tsigPrimary(t, z, key)
	px := harness.StartDNSProxy(t, p.Addr())
	a := tsigAgent(t, px.Addr(), key)
	create(t, a, 0x1221)
	old := tsigZoneSet(t, z)
	if d := harness.DiffSets(old, harness.MustZoneFileSet(t, a.ZoneFile(zone), bogusOrigin), 5); d != "" {
		t.Fatalf("after the signed AXFR: %s", d)
	}

	z2 := z.Next(1000, 1000) // the IXFR answer takes several messages too
	p.SetZone(t, zone, z2.Text())
	tampers := []struct {
		name    string
		rewrite func(i int, msg []byte) []byte
		want    string
	}{
		{"second message altered", func(i int, msg []byte) []byte {
			if i == 1 {
				msg[3] ^= 0x20 // the AD bit: the message still parses, its MAC no longer matches
			}
			return msg
		}, "signature does not verify with TSIG key xfr-key."},
		{"TSIG stripped after the first message", func(i int, msg []byte) []byte {
			if i > 0 {
				return stripTSIG(msg)
			}
			return msg
		}, "the last message must be signed"},
	}
	for i, tt := range tampers {
		fault := harness.DNSFault{Rewrite: tt.rewrite}
		px.SetMode(harness.DNSProxyMode{IXFR: fault, AXFR: fault})
		st := refusedTransfers(t, tt.name, a, px, func() { notify(t, a, 0x1231+uint16(i)) })
		if !strings.Contains(st.LastError, tt.want) {
			t.Errorf("%s: /zones last_error %q, want it to say %q", tt.name, st.LastError, tt.want)
		}
		// The line is written just after the status changes: give it a moment.
		logged := harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
			for _, l := range xfrLog(a, "zone check failed") {
				if strings.Contains(l.Error, tt.want) {
					return true
				}
			}
			return false
		})
		if !logged {
			t.Errorf("%s: no \"zone check failed\" log line saying %q", tt.name, tt.want)
		}
		if d := harness.DiffSets(old, harness.MustZoneFileSet(t, a.ZoneFile(zone), bogusOrigin), 5); d != "" {
			t.Errorf("%s: the old zone was not kept: %s", tt.name, d)
		}
	}

	px.Pass()
	notify(t, a, 0x1239)
	if _, ok := xfrWaitSerial(a, zone, z2.Serial, 10*time.Second); !ok {
		t.Fatalf("zone not updated to %d once the stream is untouched", z2.Serial)
	}
	if d := harness.DiffSets(tsigZoneSet(t, z2), harness.MustZoneFileSet(t, a.ZoneFile(zone), bogusOrigin), 5); d != "" {
		t.Errorf("after the untouched transfer: %s", d)
	}
}

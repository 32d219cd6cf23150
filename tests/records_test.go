package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// A record no zone file can hold, in the middle of a many-message transfer from named (a
// proxy puts it into the second message, where named could not): the transfer fails, IXFR
// and the AXFR after it alike, the zone keeps its old version, and /zones says why. The
// records are what backend.CheckRecord refuses: each would reach a zone file the DNS
// server then fails to load.
func TestUnloadableRecordKeepsTheZone(t *testing.T) {
	t.Parallel()
	e := xfrCreated(t, xfrOpts{records: 3000, proxy: true}, 0x1901)
	old := primarySet(t, e.p)
	e.next(t, 500, 500) // the IXFR answer takes several messages too
	for i, tc := range []struct {
		name, rr, want string
	}{
		{"class CH", "bad." + zone + " 300 CH A 192.0.2.1", "class CH, not IN"},
		{"SOA below the apex", "sub." + zone + " 300 IN SOA ns1." + zone + " hostmaster." + zone + " 1 2 3 4 5", "SOA record below the apex"},
		{"CAA tag a zone file cannot write", "", `CAA tag "is sue"`},
	} {
		var extra dns.RR
		if tc.rr != "" {
			rr, err := dns.NewRR(tc.rr)
			if err != nil {
				t.Fatal(err)
			}
			extra = rr
		} else {
			extra = &dns.CAA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeCAA, Class: dns.ClassINET, Ttl: 300}, Tag: "is sue", Value: "ca.example"}
		}
		inject := harness.DNSFault{Rewrite: func(n int, msg []byte) []byte {
			if n != 1 {
				return msg
			}
			m := new(dns.Msg)
			if m.Unpack(msg) != nil {
				return msg
			}
			m.Answer = append(m.Answer, extra)
			out, err := m.Pack()
			if err != nil {
				return msg
			}
			return out
		}}
		e.px.SetMode(harness.DNSProxyMode{IXFR: inject, AXFR: inject})
		st := refusedTransfers(t, tc.name, e.a, e.px, func() { notify(t, e.a, 0x1910+uint16(i)) })
		if !strings.Contains(st.LastError, tc.want) {
			t.Errorf("%s: /zones last_error %q, want it to say %q", tc.name, st.LastError, tc.want)
		}
		if d := diffFile(e.a, old); d != "" {
			t.Errorf("%s: the old zone was not kept: %s", tc.name, d)
		}
	}
	e.px.Pass()
	notify(t, e.a, 0x1920)
	if _, ok := xfrWaitSerial(e.a, zone, e.z.Serial, 15*time.Second); !ok {
		t.Fatalf("zone not updated to %d once the transfer is untouched", e.z.Serial)
	}
	if d := diffFile(e.a, primarySet(t, e.p)); d != "" {
		t.Errorf("after the untouched transfer: %s", d)
	}
}

// refusedTransfers runs notify and waits until the zone's check has had its IXFR and the
// AXFR after it refused (both through px) and retries; it returns the zone's status then.
func refusedTransfers(t *testing.T, what string, a *harness.Agent, px *harness.DNSProxy, notify func()) xfrStatus {
	t.Helper()
	before := px.Transfers()
	notify()
	var st xfrStatus
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		st, _ = xfrZoneStatus(t, a, zone)
		return px.Transfers() >= before+2 && st.State == "retrying"
	}) {
		t.Fatalf("%s: no IXFR and AXFR refused: %v (transfers %d)", what, st, px.Transfers()-before)
	}
	return st
}

// named's IXFR answer cut down by a proxy to its first record, the newer SOA, with the
// connection held open: RFC 1995 §4's "ask by AXFR", as PowerDNS with SOA-EDIT sends it.
// The agent takes the AXFR of the 3,000-record zone within seconds, not after
// transfer_stall_timeout (30 s).
func TestIXFRAnsweredWithTheSOAAlone(t *testing.T) {
	t.Parallel()
	e := xfrCreated(t, xfrOpts{records: 3000, proxy: true}, 0x1931)
	loneSOA := harness.DNSFault{Rewrite: func(n int, msg []byte) []byte {
		m := new(dns.Msg)
		if n > 0 || m.Unpack(msg) != nil || len(m.Answer) == 0 {
			return nil
		}
		m.Answer = m.Answer[:1]
		out, err := m.Pack()
		if err != nil {
			return nil
		}
		return out
	}}
	e.px.SetMode(harness.DNSProxyMode{IXFR: loneSOA})
	e.next(t, 500, 500)
	start := time.Now()
	notify(t, e.a, 0x1932)
	took, ok := xfrWaitSerial(e.a, zone, e.z.Serial, 20*time.Second)
	if !ok {
		t.Fatalf("zone not at serial %d 20 s after the NOTIFY", e.z.Serial)
	}
	if took > 10*time.Second {
		t.Errorf("the new version came %v after the NOTIFY, want well under transfer_stall_timeout (30 s)", took)
	}
	// The file is in place a moment before the check is recorded.
	var st xfrStatus
	harness.Eventually(5*time.Second, 20*time.Millisecond, func() bool {
		st, _ = xfrZoneStatus(t, e.a, zone)
		return st.LastTransfer != nil && st.LastTransfer.To == e.z.Serial
	})
	if st.LastTransfer == nil || st.LastTransfer.Type != "AXFR" || !strings.Contains(st.LastTransfer.Fallback, "SOA alone") {
		t.Errorf("last transfer %v, want an AXFR falling back from the IXFR answered with the SOA alone", st)
	}
	if d := diffFile(e.a, primarySet(t, e.p)); d != "" {
		t.Errorf("after the AXFR: %s", d)
	}
	t.Logf("new version applied %v after the NOTIFY (%v in all)", took, time.Since(start))
}

package catalog

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/internal/dnstest"
	"github.com/miekg/dns"
)

// testPrimary is a scripted primary serving several zones over TCP: SOA queries, AXFR,
// and IXFR answered with the whole zone (RFC 1995 §4). End-to-end tests use a real named.
type testPrimary struct {
	addr netip.AddrPort

	mu    sync.Mutex
	zones map[string][]dns.RR
	down  bool // close every connection, as a primary that is down
}

func startTestPrimary(t *testing.T) *testPrimary {
	t.Helper()
	p := &testPrimary{zones: map[string][]dns.RR{}}
	p.addr = dnstest.ServeTCP(t, "127.0.0.1", p.serve, nil)
	return p
}

// setZone serves rrs (SOA first) for zone.
func (p *testPrimary) setZone(zone string, rrs []dns.RR) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.zones[zone] = rrs
}

// member serves a small member zone.
func (p *testPrimary) member(zone string, serial uint32) {
	p.setZone(zone, backendtest.Zone(zone, serial, 3))
}

func (p *testPrimary) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func (p *testPrimary) serve(w dns.ResponseWriter, r *dns.Msg) {
	p.mu.Lock()
	rrs, down := p.zones[strings.ToLower(r.Question[0].Name)], p.down
	p.mu.Unlock()
	if down {
		w.Close()
		return
	}
	reply := new(dns.Msg).SetReply(r)
	reply.Authoritative = true
	switch {
	case rrs == nil:
		reply.Rcode = dns.RcodeRefused
	case r.Question[0].Qtype == dns.TypeSOA:
		reply.Answer = rrs[:1]
	case r.Question[0].Qtype == dns.TypeAXFR || r.Question[0].Qtype == dns.TypeIXFR:
		reply.Answer = append(append([]dns.RR(nil), rrs...), rrs[0])
	default:
		reply.Rcode = dns.RcodeRefused
	}
	w.WriteMsg(reply)
}

// catalogRRs builds a catalog zone: members maps unique label -> member zone; extra lines
// (owner names relative to the catalog) are appended, e.g. `coo.x.zones PTR other.test.`.
func catalogRRs(t *testing.T, catalog string, serial uint32, version string, members map[string]string, extra ...string) []dns.RR {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n@ 0 IN SOA invalid. invalid. %d 3600 600 86400 0\n@ 0 IN NS invalid.\n", catalog, serial)
	if version != "" {
		fmt.Fprintf(&b, "version 0 IN TXT %q\n", version)
	}
	labels := make([]string, 0, len(members))
	for label := range members {
		labels = append(labels, label)
	}
	sort.Strings(labels)
	for _, label := range labels {
		fmt.Fprintf(&b, "%s.zones 0 IN PTR %s\n", label, members[label])
	}
	for _, line := range extra {
		fmt.Fprintln(&b, line)
	}
	return records(t, b.String())
}

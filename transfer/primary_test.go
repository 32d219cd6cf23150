package transfer

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/miekg/dns"
)

// fakePrimary is a scripted primary for unit tests of the engine: it serves one zone's SOA
// and AXFR over TCP, counts transfers, and can hold or cut them. End-to-end tests use a
// real named instead.
type fakePrimary struct {
	addr netip.AddrPort

	mu      sync.Mutex
	zone    string
	records []dns.RR
	cut     bool          // stop before the closing SOA and close the connection
	hold    chan struct{} // when set, AXFRs wait until it is closed
	extra   []dns.RR      // appended to the transfer (e.g. out-of-zone records)

	axfrs atomic.Int32
}

func startPrimary(t *testing.T, zone string, serial uint32, n int) *fakePrimary {
	t.Helper()
	p := &fakePrimary{zone: zone, records: backendtest.Zone(zone, serial, n)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(p.serve), NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	p.addr = netip.MustParseAddrPort(ln.Addr().String())
	return p
}

func (p *fakePrimary) setZone(serial uint32, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records = backendtest.Zone(p.zone, serial, n)
}

func (p *fakePrimary) serve(w dns.ResponseWriter, r *dns.Msg) {
	p.mu.Lock()
	records, cut, hold, extra := p.records, p.cut, p.hold, p.extra
	p.mu.Unlock()
	reply := new(dns.Msg).SetReply(r)
	reply.Authoritative = true
	switch r.Question[0].Qtype {
	case dns.TypeSOA:
		reply.Answer = records[:1]
		w.WriteMsg(reply)
	case dns.TypeAXFR:
		p.axfrs.Add(1)
		if hold != nil {
			<-hold
		}
		body := append(append([]dns.RR(nil), records...), extra...)
		for i := 0; i < len(body); i += 50 {
			msg := new(dns.Msg).SetReply(r)
			msg.Answer = body[i:min(i+50, len(body))]
			w.WriteMsg(msg)
		}
		if cut {
			w.Close()
			return
		}
		closing := new(dns.Msg).SetReply(r)
		closing.Answer = records[:1]
		w.WriteMsg(closing)
	default:
		reply.Rcode = dns.RcodeRefused
		w.WriteMsg(reply)
	}
}

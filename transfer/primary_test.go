package transfer

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/miekg/dns"
)

// fakePrimary is a scripted primary for unit tests of the engine: it serves one zone's SOA
// and AXFR over TCP, counts transfers, and can hold or cut them. End-to-end tests use a
// real named instead.
type fakePrimary struct {
	addr netip.AddrPort

	mu       sync.Mutex
	zone     string
	records  []dns.RR
	versions [][]dns.RR    // every version served, oldest first, for IXFR
	ixfr     string        // "" answers IXFR properly; "notimp", "full", "badchain" or "cut" misbehave
	down     bool          // close every connection at once, as a primary that is down
	tsig     string        // when set, requests must be signed with this key name (secret tsigSecret)
	cut      bool          // stop before the closing SOA and close the connection
	hold     chan struct{} // when set, AXFRs wait until it is closed
	extra    []dns.RR      // appended to the transfer (e.g. out-of-zone records)

	axfrs atomic.Int32
	ixfrs atomic.Int32
	soas  atomic.Int32
}

func startPrimary(t *testing.T, zone string, serial uint32, n int) *fakePrimary {
	t.Helper()
	p := &fakePrimary{zone: zone}
	p.setZone(serial, n)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(p.serve), NotifyStartedFunc: func() { close(started) },
		TsigSecret: map[string]string{"transfer.key.": tsigSecret}}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	p.addr = netip.MustParseAddrPort(ln.Addr().String())
	return p
}

// set changes the primary's behaviour while it serves.
func (p *fakePrimary) set(change func(p *fakePrimary)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	change(p)
}

// transfers counts AXFR and IXFR requests.
func (p *fakePrimary) transfers() int32 { return p.axfrs.Load() + p.ixfrs.Load() }

func (p *fakePrimary) setZone(serial uint32, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records = backendtest.Zone(p.zone, serial, n)
	p.versions = append(p.versions, p.records)
}

const tsigSecret = "c2VjcmV0LWZvci10ZXN0cy1vbmx5LTEyMzQ1Njc4"

// send writes records in messages of 50, signed when the request was.
func send(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) {
	for i := 0; i < len(rrs); i += 50 {
		msg := new(dns.Msg).SetReply(r)
		msg.Answer = rrs[i:min(i+50, len(rrs))]
		sign(w, r, msg)
		w.WriteMsg(msg)
	}
}

func sign(w dns.ResponseWriter, r, reply *dns.Msg) {
	if t := r.IsTsig(); t != nil && w.TsigStatus() == nil {
		reply.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	}
}

// ixfrAnswer builds the RFC 1995 answer taking a client at serial to the newest version.
func (p *fakePrimary) ixfrAnswer(serial uint32) []dns.RR {
	newest := p.versions[len(p.versions)-1]
	start := slices.IndexFunc(p.versions, func(v []dns.RR) bool { return v[0].(*dns.SOA).Serial == serial })
	if start < 0 || p.ixfr == "full" {
		return append(append([]dns.RR(nil), newest...), newest[0])
	}
	answer := []dns.RR{newest[0]}
	for i := start; i < len(p.versions)-1; i++ {
		old, next := p.versions[i], p.versions[i+1]
		oldSOA := old[0]
		if p.ixfr == "badchain" {
			bad := dns.Copy(oldSOA).(*dns.SOA)
			bad.Serial += 1000
			oldSOA = bad
		}
		answer = append(answer, oldSOA)
		answer = append(answer, missing(old[1:], next[1:])...)
		answer = append(answer, next[0])
		answer = append(answer, missing(next[1:], old[1:])...)
	}
	return append(answer, newest[0])
}

// missing lists the records of a that b lacks.
func missing(a, b []dns.RR) []dns.RR {
	inB := map[string]bool{}
	for _, rr := range b {
		inB[backend.Key(rr)] = true
	}
	var out []dns.RR
	for _, rr := range a {
		if !inB[backend.Key(rr)] {
			out = append(out, rr)
		}
	}
	return out
}

func (p *fakePrimary) serve(w dns.ResponseWriter, r *dns.Msg) {
	p.mu.Lock()
	records, cut, hold, extra, mode, down := p.records, p.cut, p.hold, p.extra, p.ixfr, p.down
	var ixfr []dns.RR
	if r.Question[0].Qtype == dns.TypeIXFR && len(r.Ns) == 1 {
		ixfr = p.ixfrAnswer(r.Ns[0].(*dns.SOA).Serial)
	}
	p.mu.Unlock()
	reply := new(dns.Msg).SetReply(r)
	reply.Authoritative = true
	if down {
		w.Close()
		return
	}
	if p.tsig != "" && (r.IsTsig() == nil || w.TsigStatus() != nil) {
		reply.Rcode = dns.RcodeNotAuth
		w.WriteMsg(reply)
		return
	}
	switch r.Question[0].Qtype {
	case dns.TypeSOA:
		p.soas.Add(1)
		reply.Answer = records[:1]
		sign(w, r, reply)
		w.WriteMsg(reply)
	case dns.TypeIXFR:
		p.ixfrs.Add(1)
		if hold != nil {
			<-hold
		}
		switch mode {
		case "notimp":
			reply.Rcode = dns.RcodeNotImplemented
			w.WriteMsg(reply)
		case "cut":
			send(w, r, ixfr[:len(ixfr)/2])
			w.Close()
		default:
			send(w, r, ixfr)
		}
	case dns.TypeAXFR:
		p.axfrs.Add(1)
		if hold != nil {
			<-hold
		}
		body := append(append([]dns.RR(nil), records...), extra...)
		if !cut {
			body = append(body, records[0])
		}
		send(w, r, body)
		if cut {
			w.Close()
		}
	default:
		reply.Rcode = dns.RcodeRefused
		w.WriteMsg(reply)
	}
}

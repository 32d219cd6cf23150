package transfer

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/internal/dnstest"
	"github.com/dnsagent/dnsagent/tsigkey"
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
	ixfr     string        // "" answers IXFR properly; "notimp", "full", "badchain", "cut", "stall" or "lone-soa" misbehave
	open     chan struct{} // "lone-soa" keeps the connection until it is closed
	down     bool          // close every connection at once, as a primary that is down
	tsig     string        // when set, requests must be signed with this key name (secret tsigSecret)
	signing  signing       // how the messages of a signed transfer are signed
	cut      bool          // stop before the closing SOA and close the connection
	hold     chan struct{} // when set, AXFRs wait until it is closed (and IXFRs: at once, or mid-way when "stall")
	soaDelay time.Duration // SOA answers wait this long
	soa      uint32        // when set, SOA answers give this serial, not the zone's
	extra    []dns.RR      // appended to the transfer (e.g. out-of-zone records)

	axfrs atomic.Int32
	ixfrs atomic.Int32
	soas  atomic.Int32
	// lastRequest is when the last SOA, IXFR or AXFR request came (unix nanoseconds).
	lastRequest atomic.Int64
}

func startPrimary(t *testing.T, zone string, serial uint32, n int) *fakePrimary {
	t.Helper()
	return startPrimaryOn(t, "127.0.0.1", zone, serial, n)
}

// startPrimaryOn is startPrimary listening on ip (any loopback address), so that masters
// can differ in address, not only in port.
func startPrimaryOn(t *testing.T, ip, zone string, serial uint32, n int) *fakePrimary {
	t.Helper()
	p := &fakePrimary{zone: zone}
	p.setZone(serial, n)
	p.addr = dnstest.ServeTCP(t, ip, p.serve, map[string]string{"transfer.key.": tsigSecret})
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
func send(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR, how signing) {
	var signer *streamSigner
	if t := r.IsTsig(); t != nil && w.TsigStatus() == nil {
		signer = newStreamSigner(t)
	}
	n := (len(rrs) + 49) / 50
	for i := range n {
		msg := new(dns.Msg).SetReply(r)
		msg.Answer = rrs[i*50 : min(i*50+50, len(rrs))]
		if signer == nil {
			w.WriteMsg(msg)
			continue
		}
		wire := signer.sign(msg, how.signs(i, n))
		if how.alter && i == n/2 {
			wire[3] ^= 0x20 // the AD bit: parses the same, but covered by the MAC
		}
		w.Write(wire)
	}
}

// signing says which messages of a signed transfer carry a TSIG. The zero value signs
// every message.
type signing struct {
	every        int  // sign only message 0, every every-th message and the last
	lastUnsigned bool // leave the last message unsigned (a stream that is not closed by a MAC)
	alter        bool // flip a bit in the middle message after signing it
}

func (h signing) signs(i, n int) bool {
	switch {
	case i == n-1:
		return !h.lastUnsigned
	case h.every > 1:
		return i%h.every == 0
	}
	return true
}

// streamSigner signs the messages of one answer as RFC 8945 §5.3.1 says, written here
// from the RFC rather than with the client's code: a MAC covers the previous MAC (the
// request's first), every unsigned message since, the message, and all TSIG variables
// (first message) or the timers only (later ones).
type streamSigner struct {
	req      *dns.TSIG
	prior    []byte // previous MAC
	unsigned []byte // unsigned messages since
	signed   int
}

func newStreamSigner(req *dns.TSIG) *streamSigner {
	prior, _ := hex.DecodeString(req.MAC)
	return &streamSigner{req: req, prior: prior}
}

func (s *streamSigner) sign(m *dns.Msg, signIt bool) []byte {
	wire, err := m.Pack()
	if err != nil {
		panic(err)
	}
	if !signIt {
		s.unsigned = append(s.unsigned, wire...)
		return wire
	}
	secret, _ := base64.StdEncoding.DecodeString(tsigSecret)
	newHash, _ := tsigkey.Hash(s.req.Algorithm)
	h := hmac.New(newHash, secret)
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(s.prior))))
	h.Write(s.prior)
	h.Write(s.unsigned)
	h.Write(wire)
	now := uint64(time.Now().Unix())
	timers := binary.BigEndian.AppendUint16(nil, uint16(now>>32))
	timers = binary.BigEndian.AppendUint32(timers, uint32(now))
	timers = binary.BigEndian.AppendUint16(timers, 300)
	if s.signed == 0 { // RFC 8945 §4.3.3: name, class ANY, TTL 0, algorithm, timers, error, other len
		h.Write(packName(s.req.Hdr.Name))
		h.Write([]byte{0, dns.ClassANY, 0, 0, 0, 0})
		h.Write(packName(s.req.Algorithm))
		h.Write(timers)
		h.Write([]byte{0, 0, 0, 0})
	} else {
		h.Write(timers)
	}
	mac := h.Sum(nil)
	ts := &dns.TSIG{Hdr: dns.RR_Header{Name: s.req.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: s.req.Algorithm, TimeSigned: now, Fudge: 300, MACSize: uint16(len(mac)), MAC: hex.EncodeToString(mac), OrigId: m.Id}
	rr := make([]byte, dns.Len(ts))
	off, err := dns.PackRR(ts, rr, 0, nil, false)
	if err != nil {
		panic(err)
	}
	wire = append(wire, rr[:off]...)
	binary.BigEndian.PutUint16(wire[10:], binary.BigEndian.Uint16(wire[10:])+1) // ARCOUNT
	s.prior, s.unsigned = mac, nil
	s.signed++
	return wire
}

func packName(name string) []byte {
	b := make([]byte, 256)
	n, err := dns.PackDomainName(dns.CanonicalName(name), b, 0, nil, false)
	if err != nil {
		panic(err)
	}
	return b[:n]
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
	records, cut, hold, extra, mode, down, how, soaDelay, soaSerial, open := p.records, p.cut, p.hold, p.extra, p.ixfr, p.down, p.signing, p.soaDelay, p.soa, p.open
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
	p.lastRequest.Store(time.Now().UnixNano())
	switch r.Question[0].Qtype {
	case dns.TypeSOA:
		p.soas.Add(1)
		time.Sleep(soaDelay)
		reply.Answer = records[:1]
		if soaSerial != 0 {
			soa := dns.Copy(records[0]).(*dns.SOA)
			soa.Serial = soaSerial
			reply.Answer = []dns.RR{soa}
		}
		sign(w, r, reply)
		w.WriteMsg(reply)
	case dns.TypeIXFR:
		p.ixfrs.Add(1)
		if hold != nil && mode != "stall" {
			<-hold
		}
		switch mode {
		case "notimp":
			reply.Rcode = dns.RcodeNotImplemented
			w.WriteMsg(reply)
		case "cut":
			send(w, r, ixfr[:len(ixfr)/2], how)
			w.Close()
		case "stall": // a primary that hangs mid-transfer, connection open
			send(w, r, ixfr[:len(ixfr)/2], how)
			<-hold
		case "lone-soa": // RFC 1995 §4's "ask by AXFR", connection left open
			reply.Answer = records[:1]
			w.WriteMsg(reply)
			<-open
		default:
			send(w, r, ixfr, how)
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
		send(w, r, body, how)
		if cut {
			w.Close()
		}
	default:
		reply.Rcode = dns.RcodeRefused
		w.WriteMsg(reply)
	}
}

package service

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/handler"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Inbound keys of the fuzzed agent: two at once, as during a rotation.
const (
	fuzzKey1    = "key1."
	fuzzSecret1 = "c2VjcmV0LW9mLWtleS1vbmUtZm9yLWZ1enppbmc="
	fuzzKey2    = "key2."
	fuzzSecret2 = "c2Vjb25kLXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u"
)

// How FuzzRequest signs an input that unpacks, just before it is served. A signature
// checked in with the corpus would be stale (BADTIME) by the time it runs; these are made
// at run time so the fuzzer can reach the verified path.
const (
	signNone       = iota // bytes as they are
	signKey1              // valid, key1 (hmac-sha256)
	signKey2              // valid, key2 (hmac-sha512): the key being rotated in
	signUnknownKey        // a key the agent does not have: BADKEY
	signWrongMAC          // key1's name, another secret: BADSIG
	signStale             // key1, signed an hour ago: BADTIME
	signModes
)

// FuzzRequest feeds bytes to the request path as the listener would: miekg/dns's server
// steps (header, MsgAcceptFunc, unpack, TSIG verification against tsig_keys) and then
// the whole middleware chain built by NewHandler, with a fake transfer engine and an
// in-process query destination. Every input is served three times: from an allowed
// source by an agent with require_tsig = command; from a refused source by the same
// agent; and by an agent without keys whose rate limits drop nearly everything.
//
// It fails on a panic (even one the recover layer caught), on a request that is neither
// answered with a reply that unpacks and echoes id, opcode and question nor dropped and
// counted, on more than one reply, on an engine call with a zone name that is not a
// valid one, on any engine call or forwarded query for a refused source, on a
// CREATE/DELETE that ran without a valid signature, on a signed reply that does not
// verify, on a forwarded query carrying the client's TSIG, and on a query the UDP fast
// path would relay (handler.PlainQuery) that the chain would not.
func FuzzRequest(f *testing.F) {
	dest := startEchoDestination(f)
	core, errs := observer.New(zapcore.ErrorLevel)
	signed := newFuzzAgent(f, core, dest.addr, "tsig_keys = key1, key2\nrequire_tsig = command\n")
	limited := newFuzzAgent(f, core, dest.addr, "rate_limit_notify = 1\nrate_limit_command = 1\nrate_limit_query = 1\n")
	malformedTotal := func(t *testing.T) float64 {
		return counter(t, signed.reg, "dnsagent_malformed_total") + counter(t, limited.reg, "dnsagent_malformed_total")
	}

	f.Fuzz(func(t *testing.T, raw []byte, sign byte) {
		raw, req, sign := signInput(raw, sign)
		allowedNet := "udp"
		if len(raw) > 1 && raw[1]&1 == 1 {
			allowedNet = "tcp"
		}
		cases := []struct {
			agent   *fuzzAgent
			source  string
			network string
		}{
			{signed, "127.0.0.1", allowedNet},
			{signed, "198.51.100.7", "tcp"},
			{limited, "127.0.0.1", "udp"},
		}
		countable := malformed(raw, req != nil)
		var before float64
		if countable {
			before = malformedTotal(t)
		}
		for _, c := range cases {
			sent := dest.received.Load()
			res := c.agent.serve(raw, c.source, c.network)
			if entries := errs.TakeAll(); len(entries) > 0 {
				t.Fatalf("%s from %s: logged %q: %v", c.network, c.source, entries[0].Message, entries[0].Context)
			}
			checkResult(t, c.agent, res, req, sign)
			refused := c.source != "127.0.0.1"
			if refused && (len(res.calls) > 0 || dest.received.Load() != sent) {
				t.Fatalf("refused source: engine calls %v, %d queries forwarded", res.calls, dest.received.Load()-sent)
			}
			if c.agent == signed && !refused && c.network == "udp" && handler.PlainQuery(raw) {
				// The UDP fast path relays such a query without the chain: the chain must
				// relay it too, or drop it for the rate limit the fast path shares.
				var rl *request.RefusedError
				limited := errors.As(res.err, &rl) && rl.Reason == "rate_limit"
				if !limited && (res.err != nil || dest.received.Load() != sent+1 || len(res.w.Replies()) != 1) {
					t.Fatalf("a plain query (handler.PlainQuery) was not relayed by the chain: rcode %d, %v", res.rcode, res.err)
				}
			}
			if c.agent == signed && !refused && sign != signKey1 && sign != signKey2 {
				for _, call := range res.calls {
					if !strings.HasPrefix(call, "notify ") {
						t.Fatalf("require_tsig = command, but %q ran for a request signed with mode %d", call, sign)
					}
				}
			}
		}
		if countable {
			if n := malformedTotal(t) - before; n != float64(len(cases)) {
				t.Fatalf("a malformed message was served %d times and counted %v times in dnsagent_malformed_total", len(cases), n)
			}
		}
		if n := dest.tsigForwarded.Swap(0); n > 0 {
			t.Fatalf("%d forwarded queries carried the client's TSIG record to query_destination: "+
				"the agent verified it; the destination does not know the key and answers NOTAUTH", n)
		}
	})
}

// fuzzAgent is one configured request path with the listener's settings.
type fuzzAgent struct {
	handler  request.Handler
	srv      *dns.Server          // MsgAcceptFunc, MsgInvalidFunc and TsigProvider as the listener sets them
	reg      *prometheus.Registry // the agent's counters
	zones    *fakeZones
	provider dns.TsigProvider
}

func newFuzzAgent(tb testing.TB, errs zapcore.Core, dest, options string) *fuzzAgent {
	tb.Helper()
	f, err := config.Parse("[service:agent]\nmasters = 127.0.0.1:5354\nallow_notify = 192.0.2.1, 127.0.0.0/8\n" + options +
		"[tsig:key1]\nalgorithm = hmac-sha256\nsecret = " + fuzzSecret1 + "\n" +
		"[tsig:key2]\nalgorithm = hmac-sha512\nsecret = " + fuzzSecret2 + "\n")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := ReadConfig(f)
	if err := f.Err(); err != nil {
		tb.Fatal(err)
	}
	cfg.QueryDestination = dest
	log := zap.New(errs)
	zones := &fakeZones{known: map[string]bool{"example.com.": true}}
	s := listenerService(cfg, middleware.NewAllowLists(cfg.AllowNotify, cfg.AllowQuery), log)
	h, _ := newRequestPath(cfg, zones, s.allow, nil, s.counters, log)
	a := &fuzzAgent{handler: h, srv: s.server(&dns.Server{}, nil), reg: prometheus.NewRegistry(), zones: zones}
	s.counters.Register(a.reg)
	a.provider = a.srv.TsigProvider
	return a
}

// result is what serving one input produced.
type result struct {
	action  dns.MsgAcceptAction
	invalid bool  // miekg/dns could not unpack it: MsgInvalidFunc ran, no handler
	rcode   int   // from the chain
	err     error // from the chain
	w       *requesttest.Writer
	calls   []string // engine calls
}

// serve mirrors dns.Server.serveDNS for one message, then the chain.
func (a *fuzzAgent) serve(in []byte, source, network string) result {
	raw := append([]byte(nil), in...) // TSIG verification writes into the buffer
	w := requesttest.New(source, network == "tcp")
	w.Provider = a.provider
	res := result{w: w}
	if len(raw) < 12 {
		a.srv.MsgInvalidFunc(raw, errors.New("short header"))
		res.invalid = true
		return res
	}
	res.action = a.srv.MsgAcceptFunc(header(raw))
	if res.action != dns.MsgAccept {
		return res // ignored (a response), or answered FORMERR/NOTIMP by miekg/dns itself
	}
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		a.srv.MsgInvalidFunc(raw, err)
		res.invalid = true
		return res
	}
	if t := req.IsTsig(); t != nil && a.provider != nil {
		w.Status = dns.TsigVerifyWithProvider(raw, a.provider, "", false)
		w.RequestMAC = t.MAC
	}
	a.zones.calls = nil
	res.rcode, res.err = a.handler.ServeDNS(context.Background(), w, req)
	res.calls = a.zones.calls
	return res
}

// malformed reports whether the listener must count raw as malformed before any handler
// runs: too short for a header, or not unpackable (a response is ignored, not malformed).
// Wrong section counts reach the chain, which answers FORMERR unless a rate limit drops
// the request first.
func malformed(raw []byte, unpacks bool) bool {
	if len(raw) < 12 {
		return true
	}
	if middleware.AcceptRequests(header(raw)) == dns.MsgIgnore {
		return false
	}
	return !unpacks
}

func header(raw []byte) dns.Header {
	u := func(i int) uint16 { return binary.BigEndian.Uint16(raw[i:]) }
	return dns.Header{Id: u(0), Bits: u(2), Qdcount: u(4), Ancount: u(6), Nscount: u(8), Arcount: u(10)}
}

// checkResult applies the invariants that do not depend on the source.
func checkResult(t *testing.T, a *fuzzAgent, res result, req *dns.Msg, sign byte) {
	t.Helper()
	if res.invalid || res.action != dns.MsgAccept {
		return // miekg/dns's own handling; MsgInvalidFunc counted the invalid ones
	}
	for _, call := range res.calls {
		zone := call[strings.IndexByte(call, ' ')+1:]
		if backend.ValidateZoneName(zone) != nil || zone != strings.ToLower(zone) {
			t.Fatalf("the engine was asked %q: not a valid canonical zone name", call)
		}
	}
	switch len(res.w.Replies()) {
	case 0:
		var refused *request.RefusedError
		if !errors.As(res.err, &refused) || refused.Reason != "rate_limit" || counter(t, a.reg, "dnsagent_rate_limited_total") == 0 {
			t.Fatalf("request neither answered nor dropped and counted: rcode %d, error %v", res.rcode, res.err)
		}
		return
	case 1:
	default:
		t.Fatalf("%d replies to one request", len(res.w.Replies()))
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(res.w.Replies()[0]); err != nil {
		t.Fatalf("reply %x does not unpack: %v", res.w.Replies()[0], err)
	}
	if reply.Id != req.Id || !reply.Response || reply.Opcode != req.Opcode {
		t.Fatalf("reply id %d opcode %d qr %v to request id %d opcode %d", reply.Id, reply.Opcode, reply.Response, req.Id, req.Opcode)
	}
	if len(reply.Question) > 0 && (len(req.Question) == 0 || reply.Question[0] != req.Question[0]) {
		t.Fatalf("reply question %v, request %v", reply.Question, req.Question)
	}
	// Designate's worker counts a NOTIFY or command as done only with NOERROR and AA.
	if op := reply.Opcode; (op == dns.OpcodeNotify || op == request.OpcodeCC) && reply.Rcode == dns.RcodeSuccess && !reply.Authoritative {
		t.Fatalf("a NOERROR %s reply without AA", request.OpcodeName(op))
	}
	checkTSIG(t, a, res, req, reply, sign)
}

// checkTSIG: RFC 8945 error replies carry the right code (BADKEY and BADSIG unsigned),
// and a reply to a request the agent verified verifies with the same key.
func checkTSIG(t *testing.T, a *fuzzAgent, res result, req, reply *dns.Msg, sign byte) {
	t.Helper()
	rt, qt := reply.IsTsig(), req.IsTsig()
	if rt == nil || qt == nil || a.provider == nil {
		// FORMERR and BADVERS (an EDNS version above 0) come from Validate, which answers
		// a malformed request before the TSIG layer that signs replies.
		if a.provider != nil && (sign == signKey1 || sign == signKey2) && res.w.Status == nil &&
			reply.Rcode != dns.RcodeFormatError && reply.Rcode != dns.RcodeBadVers && qt != nil {
			t.Fatalf("a request signed with %s and verified got an unsigned %s reply", qt.Hdr.Name, dns.RcodeToString[reply.Rcode])
		}
		return
	}
	switch rt.Error {
	case dns.RcodeBadKey, dns.RcodeBadSig:
		if reply.Rcode != dns.RcodeNotAuth || rt.MAC != "" {
			t.Fatalf("TSIG error %d with rcode %s and MAC %q, want NOTAUTH and no MAC", rt.Error, dns.RcodeToString[reply.Rcode], rt.MAC)
		}
		return
	case dns.RcodeBadTime:
		if reply.Rcode != dns.RcodeNotAuth || rt.MAC == "" {
			t.Fatalf("BADTIME with rcode %s and MAC %q, want NOTAUTH, signed", dns.RcodeToString[reply.Rcode], rt.MAC)
		}
		return
	case dns.RcodeSuccess:
	default:
		t.Fatalf("reply TSIG error %d", rt.Error)
	}
	if res.w.Status != nil {
		t.Fatalf("request TSIG failed (%v) but the reply is signed without an error code", res.w.Status)
	}
	if err := dns.TsigVerifyWithProvider(res.w.Replies()[0], a.provider, qt.MAC, false); err != nil {
		t.Fatalf("the signed reply does not verify with %s: %v", rt.Hdr.Name, err)
	}
}

// counter sums a counter family in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, fam := range families {
		if fam.GetName() == name {
			for _, m := range fam.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// signInput unpacks raw and re-signs it as sign says; inputs that do not unpack, and
// signNone, pass as they are. It returns the bytes to serve and the message they hold.
func signInput(raw []byte, sign byte) ([]byte, *dns.Msg, byte) {
	sign %= signModes
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		return raw, nil, signNone
	}
	if sign == signNone {
		return raw, req, sign
	}
	m := req.Copy()
	if t := m.IsTsig(); t != nil {
		m.Extra = m.Extra[:len(m.Extra)-1]
	}
	name, alg, secret, at := fuzzKey1, dns.HmacSHA256, fuzzSecret1, time.Now().Unix()
	switch sign {
	case signKey2:
		name, alg, secret = fuzzKey2, dns.HmacSHA512, fuzzSecret2
	case signUnknownKey:
		name = "nosuchkey."
	case signWrongMAC:
		secret = fuzzSecret2
	case signStale:
		at -= 3600
	}
	m.SetTsig(name, alg, 300, at)
	signed, _, err := dns.TsigGenerate(m, secret, "", false)
	if err != nil {
		return raw, req, signNone
	}
	out := new(dns.Msg)
	if out.Unpack(signed) != nil {
		return raw, req, signNone
	}
	return signed, out, sign
}

// echoDestination stands in for query_destination over UDP and TCP on one loopback port:
// it answers every query with the query itself, QR set, and notes what it received.
type echoDestination struct {
	addr          string
	received      atomic.Int64
	tsigForwarded atomic.Int64
}

func startEchoDestination(tb testing.TB) *echoDestination {
	tb.Helper()
	var (
		tl  net.Listener
		pc  net.PacketConn
		err error
	)
	for range 20 {
		if tl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
		if pc, err = net.ListenPacket("udp", tl.Addr().String()); err == nil {
			break
		}
		tl.Close()
	}
	if err != nil {
		tb.Fatalf("no loopback port free for TCP and UDP: %v", err)
	}
	d := &echoDestination{addr: tl.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, dns.MaxMsgSize)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(d.answer(buf[:n]), from) //nolint:errcheck // the agent times out
		}
	}()
	go func() {
		defer wg.Done()
		for {
			conn, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // ends the read
				var length [2]byte
				if _, err := io.ReadFull(conn, length[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(length[:]))
				if _, err := io.ReadFull(conn, q); err != nil {
					return
				}
				a := d.answer(q)
				conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...)) //nolint:errcheck // as above
			}()
		}
	}()
	tb.Cleanup(func() {
		tl.Close()
		pc.Close()
		wg.Wait()
	})
	return d
}

// answer answers q as a server would: id, opcode and question echoed, nothing else; a
// query it cannot read gets a bare FORMERR. Like a real server that does not hold the
// client's key it does not sign, and it notes a TSIG record that came along.
func (d *echoDestination) answer(q []byte) []byte {
	d.received.Add(1)
	if m := new(dns.Msg); m.Unpack(q) == nil {
		if m.IsTsig() != nil {
			d.tsigForwarded.Add(1)
		}
		if a, err := new(dns.Msg).SetReply(m).Pack(); err == nil {
			return a
		}
	}
	formerr := make([]byte, 12) // no section: every count stays 0
	copy(formerr, q[:min(len(q), 4)])
	formerr[2], formerr[3] = 0x80|formerr[2]&0x78, dns.RcodeFormatError
	return formerr
}

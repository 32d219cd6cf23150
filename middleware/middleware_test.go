package middleware

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// served is the handler behind the layer under test: it answers NOERROR with AA and
// counts the requests that reached it.
type served struct{ n int }

func (s *served) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	s.n++
	return request.WriteReply(w, r, dns.RcodeSuccess, true)
}

func command(zone string) *dns.Msg {
	m := new(dns.Msg).SetQuestion(zone, request.TypeCreate)
	m.Opcode, m.Question[0].Qclass = request.OpcodeCC, request.ClassCC
	return m
}

func withOPT(m *dns.Msg, version uint8, inAnswer bool, n int) *dns.Msg {
	for range n {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.SetVersion(version)
		if inAnswer {
			m.Answer = append(m.Answer, o)
		} else {
			m.Extra = append(m.Extra, o)
		}
	}
	return m
}

// Malformed requests get FORMERR (BADVERS for an EDNS version above 0) and never reach
// the handler; well-formed ones pass.
func TestValidate(t *testing.T) {
	soa := func(name string) dns.Question {
		return dns.Question{Name: name, Qtype: dns.TypeSOA, Qclass: dns.ClassINET}
	}
	update := new(dns.Msg).SetUpdate("example.com.")
	update.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "a.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}},
		&dns.A{Hdr: dns.RR_Header{Name: "b.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}}})
	for _, tt := range []struct {
		name  string
		req   *dns.Msg
		rcode int // what the layer answers; NOERROR: it passed
	}{
		{"no question", &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7, Opcode: dns.OpcodeNotify}}, dns.RcodeFormatError},
		{"two questions", &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7, Opcode: dns.OpcodeNotify}, Question: []dns.Question{soa("a."), soa("b.")}}, dns.RcodeFormatError},
		{"hostile zone name", command(`a"b\{}.example.`), dns.RcodeFormatError},
		{"path in zone name", command(`\.\./etc.`), dns.RcodeFormatError},
		{"two answers in a NOTIFY", func() *dns.Msg {
			m := new(dns.Msg).SetNotify("example.com.")
			rr := &dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Ns: "ns.", Mbox: "h."}
			m.Answer = []dns.RR{rr, rr}
			return m
		}(), dns.RcodeFormatError},
		{"OPT in the answer section", withOPT(new(dns.Msg).SetNotify("example.com."), 0, true, 1), dns.RcodeFormatError},
		{"two OPTs", withOPT(new(dns.Msg).SetNotify("example.com."), 0, false, 2), dns.RcodeFormatError},
		{"EDNS version 1", withOPT(new(dns.Msg).SetNotify("example.com."), 1, false, 1), dns.RcodeBadVers},
		{"NOTIFY with EDNS 0", withOPT(new(dns.Msg).SetNotify("example.com."), 0, false, 1), dns.RcodeSuccess},
		{"CREATE", command("example.com."), dns.RcodeSuccess},
		{"UPDATE with many records", update, dns.RcodeSuccess},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := &served{}
			w := requesttest.New("192.0.2.1", false)
			rcode, err := Validate()(next).ServeDNS(context.Background(), w, tt.req)
			reply := w.Msg()
			if reply == nil || reply.Rcode != tt.rcode || rcode != tt.rcode {
				t.Fatalf("reply %v, returned rcode %d; want %s", reply, rcode, dns.RcodeToString[tt.rcode])
			}
			if passed := tt.rcode == dns.RcodeSuccess; (next.n == 1) != passed || (err == nil) != passed {
				t.Errorf("reached the handler %d times, error %v", next.n, err)
			}
			if reply.Opcode != tt.req.Opcode || reply.Id != tt.req.Id {
				t.Errorf("reply opcode %d id %d, want the request's %d %d", reply.Opcode, reply.Id, tt.req.Opcode, tt.req.Id)
			}
		})
	}
}

// A panic below Recover is a SERVFAIL reply and an error; a reply already written is not
// written again; the next request is served.
func TestRecover(t *testing.T) {
	for _, written := range []bool{false, true} {
		h := Recover(zap.NewNop())(request.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			if written {
				request.WriteReply(w, r, dns.RcodeSuccess, true)
			}
			panic("bug")
		}))
		w := requesttest.New("192.0.2.1", false)
		rec := &Recorder{ResponseWriter: w}
		rcode, err := h.ServeDNS(context.Background(), rec, new(dns.Msg).SetNotify("example.com."))
		if rcode != dns.RcodeServerFailure || err == nil || !strings.Contains(err.Error(), "bug") {
			t.Errorf("written %v: returned %d, %v; want SERVFAIL and the panic", written, rcode, err)
		}
		want := dns.RcodeServerFailure
		if written {
			want = dns.RcodeSuccess
		}
		if n, m := len(w.Replies()), w.Msg(); n != 1 || m.Rcode != want {
			t.Errorf("written %v: %d replies, the last %v; want one, %s", written, n, m, dns.RcodeToString[want])
		}
	}
	next := &served{}
	w := requesttest.New("192.0.2.1", false)
	if rcode, err := Recover(zap.NewNop())(next).ServeDNS(context.Background(), w, new(dns.Msg).SetNotify("example.com.")); rcode != dns.RcodeSuccess || err != nil || next.n != 1 {
		t.Errorf("no panic: %d, %v, handler reached %d times", rcode, err, next.n)
	}
}

// NOTIFY and commands are checked against the notify list, queries against the query
// list, other opcodes pass to the handler; a refusal is REFUSED, and closes a TCP
// connection.
// A link-local source comes with its interface as a zone (fe80::1%eth0 over TCP,
// fe80::1%2 over UDP); the zone is no part of the address the lists name.
func TestACLIgnoresZones(t *testing.T) {
	acl, err := ParseACL([]string{"fe80::1", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"fe80::1%eth0": true, "fe80::1%2": true, "fe80::1": true, "fe80::2%eth0": false,
		"::ffff:192.0.2.9": true,
	} {
		if got := acl.Allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestAllow(t *testing.T) {
	notifyACL, _ := ParseACL([]string{"192.0.2.0/24"})
	queryACL, _ := ParseACL([]string{"198.51.100.7"})
	lists := NewAllowLists(notifyACL, queryACL)
	update := new(dns.Msg).SetUpdate("example.com.")
	for _, tt := range []struct {
		name, source string
		tcp          bool
		req          *dns.Msg
		allowed      bool
	}{
		{"NOTIFY from the notify list", "192.0.2.9", false, new(dns.Msg).SetNotify("example.com."), true},
		{"NOTIFY from the query list", "198.51.100.7", false, new(dns.Msg).SetNotify("example.com."), false},
		{"CREATE from the notify list", "192.0.2.9", false, command("example.com."), true},
		{"CREATE from elsewhere, TCP", "203.0.113.1", true, command("example.com."), false},
		{"query from the query list", "198.51.100.7", false, new(dns.Msg).SetQuestion("example.com.", dns.TypeSOA), true},
		{"query from the notify list", "192.0.2.9", false, new(dns.Msg).SetQuestion("example.com.", dns.TypeSOA), false},
		{"UPDATE from the notify list passes to the handler", "192.0.2.9", false, update, true},
		{"UPDATE from the query list passes to the handler", "198.51.100.7", true, update, true},
		// A stranger's other opcodes are refused here, and its TCP connection closed: else
		// it could hold a connection slot with them.
		{"UPDATE from elsewhere, TCP", "203.0.113.1", true, update, false},
		{"STATUS from elsewhere", "203.0.113.1", false, &dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeStatus}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := &served{}
			w := requesttest.New(tt.source, tt.tcp)
			h := Metadata(time.Now)(Allow(lists, zap.NewNop(), time.Minute, time.Now)(next))
			rcode, err := h.ServeDNS(context.Background(), w, tt.req)
			if tt.allowed {
				if next.n != 1 || rcode != dns.RcodeSuccess || err != nil {
					t.Errorf("handler reached %d times, rcode %d, error %v; want it served", next.n, rcode, err)
				}
				return
			}
			var refused *request.RefusedError
			if next.n != 0 || rcode != dns.RcodeRefused || w.Msg().Rcode != dns.RcodeRefused || !errors.As(err, &refused) || refused.Reason != "acl" {
				t.Errorf("handler reached %d times, rcode %d, error %v; want REFUSED for acl", next.n, rcode, err)
			}
			if w.Closed() != tt.tcp {
				t.Errorf("connection closed %v, want %v", w.Closed(), tt.tcp)
			}
		})
	}
}

// The TSIG layer refuses unsigned requests of the kinds that require a signature, answers
// NOTAUTH with the TSIG error for a bad signature, and passes the verified key on.
func TestTSIG(t *testing.T) {
	algorithms := map[string]string{"key1.": dns.HmacSHA256}
	signed := func(m *dns.Msg, key string) *dns.Msg {
		m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
		return m
	}
	for _, tt := range []struct {
		name    string
		req     *dns.Msg
		status  error // the listener's verdict
		rcode   int
		tsigErr uint16 // the TSIG error in the reply; 0 for none
		reason  string // the refusal; "" when served
	}{
		{"unsigned NOTIFY", new(dns.Msg).SetNotify("example.com."), nil, dns.RcodeSuccess, 0, ""},
		{"unsigned CREATE, commands require TSIG", command("example.com."), nil, dns.RcodeRefused, 0, "tsig_required"},
		{"signed CREATE", signed(command("example.com."), "key1."), nil, dns.RcodeSuccess, 0, ""},
		{"unknown key", signed(command("example.com."), "other."), nil, dns.RcodeNotAuth, dns.RcodeBadKey, "tsig"},
		{"bad signature", signed(command("example.com."), "key1."), dns.ErrSig, dns.RcodeNotAuth, dns.RcodeBadSig, "tsig"},
		{"clock skew", signed(command("example.com."), "key1."), dns.ErrTime, dns.RcodeNotAuth, dns.RcodeBadTime, "tsig"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var key string
			next := request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
				key = request.From(ctx).TSIGKey
				return request.WriteReply(w, r, dns.RcodeSuccess, true)
			})
			w := requesttest.New("192.0.2.1", false)
			w.Status = tt.status
			rcode, err := TSIG(map[string]bool{KindCommand: true}, algorithms, time.Now)(next).ServeDNS(context.Background(), w, tt.req)
			reply := w.Msg()
			if reply == nil || rcode != tt.rcode || reply.Rcode != tt.rcode {
				t.Fatalf("reply %v, returned %d; want %s", reply, rcode, dns.RcodeToString[tt.rcode])
			}
			var refused *request.RefusedError
			if tt.reason != "" && (!errors.As(err, &refused) || refused.Reason != tt.reason) {
				t.Errorf("error %v, want a refusal for %s", err, tt.reason)
			}
			tsig := reply.IsTsig()
			switch {
			case tt.tsigErr != 0 && (tsig == nil || tsig.Error != tt.tsigErr):
				t.Errorf("reply TSIG %v, want error %s", tsig, dns.RcodeToString[int(tt.tsigErr)])
			case tt.rcode == dns.RcodeSuccess && (tsig != nil) != (tt.req.IsTsig() != nil):
				t.Errorf("reply TSIG %v to a request signed %v: a signed request gets a signed reply", tsig, tt.req.IsTsig() != nil)
			case tt.rcode == dns.RcodeSuccess && tt.req.IsTsig() != nil && key != "key1.":
				t.Errorf("the handler saw key %q, want key1.", key)
			}
		})
	}
}

// Metadata gives every request an id, its source without the IPv4-mapped prefix and its
// transport.
func TestMetadata(t *testing.T) {
	var got []request.Meta
	h := Metadata(time.Now)(request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		got = append(got, request.From(ctx))
		return request.WriteReply(w, r, dns.RcodeSuccess, true)
	}))
	for _, w := range []*requesttest.Writer{requesttest.New("::ffff:192.0.2.1", false), requesttest.New("2001:db8::1", true)} {
		h.ServeDNS(context.Background(), w, new(dns.Msg).SetNotify("example.com."))
	}
	if len(got) != 2 || got[0].ID == got[1].ID ||
		got[0].Source.Addr() != netip.MustParseAddr("192.0.2.1") || got[0].Transport != "udp" ||
		got[1].Source.Addr() != netip.MustParseAddr("2001:db8::1") || got[1].Transport != "tcp" {
		t.Errorf("metadata %+v", got)
	}
}

// Past its rate a source's requests are dropped unanswered, each drop is counted, and the
// drops make one log line per source and kind per interval, with their count.
func TestRateLimitLogsOncePerInterval(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	core, logs := observer.New(zap.WarnLevel)
	next := &served{}
	counters := NewCounters()
	h := Metadata(clock)(RateLimit(NewLimiter(map[string]float64{KindNotify: 2}, counters, zap.New(core), 10*time.Second, clock))(next))
	send := func(n int) (dropped int) {
		for range n {
			w := requesttest.New("192.0.2.1", false)
			if h.ServeDNS(context.Background(), w, new(dns.Msg).SetNotify("example.com.")); w.Reply() == nil {
				dropped++
			}
		}
		return dropped
	}
	if d := send(7); d != 5 || next.n != 2 {
		t.Fatalf("7 NOTIFYs at a rate of 2/s: %d dropped, %d served; want 5, 2", d, next.n)
	}
	now = now.Add(5 * time.Second) // the bucket refills (burst 2); the log waits for its interval
	send(4)
	now = now.Add(5 * time.Second)
	send(3)
	var counts []int64
	for _, e := range logs.All() {
		counts = append(counts, e.ContextMap()["dropped"].(int64))
	}
	if len(counts) != 2 || counts[0] != 1 || counts[1] != 4+2+1 {
		t.Errorf("log lines with dropped counts %v; want [1 7]: the first drop, then one line 10 s later with the drops since", counts)
	}
	var limited dto.Metric
	if err := counters.rateLimited.WithLabelValues(KindNotify).Write(&limited); err != nil {
		t.Fatal(err)
	}
	if n := limited.GetCounter().GetValue(); n != 5+2+1 {
		t.Errorf("dnsagent_rate_limited_total{kind=notify} = %v; want 8", n)
	}
}

// Failures are logged at warn, sampled, except those whose cause has its line already.
func TestLoggingLevels(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	for _, err := range []error{errors.New("backend down"), &request.LoggedError{Err: errors.New("zone check failed")}} {
		h := Metadata(time.Now)(Logging(NewRequestLog(zap.New(core), time.Minute, time.Now))(request.HandlerFunc(
			func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
				rcode, _ := request.WriteReply(w, r, dns.RcodeServerFailure, false)
				return rcode, err
			})))
		h.ServeDNS(context.Background(), requesttest.New("192.0.2.1", false), command("example.com."))
	}
	entries := logs.All()
	if len(entries) != 2 || entries[0].Level != zap.WarnLevel || entries[1].Level != zap.DebugLevel {
		t.Errorf("log entries %+v; want the failure at warn, the one logged already at debug", entries)
	}
}

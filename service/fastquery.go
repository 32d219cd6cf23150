package service

import (
	"errors"
	"net/netip"
	"time"

	"github.com/dnsagent/dnsagent/handler"
	"github.com/dnsagent/dnsagent/handler/relay"
	"github.com/dnsagent/dnsagent/internal/rawudp"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

// fastQueries relays plain UDP queries (handler.PlainQuery) from the gate's reader, as a
// relay like dnsdist does: the query goes to the destination at once and the reader of
// the upstream sockets (the same goroutine, rawudp.Poller) writes the answer to the
// client (relay.Send). No server goroutine,
// no unpacking or packing, no timer per query: through the chain a query cost about
// three times the CPU of a dnsdist relay, mostly goroutine handoffs (issue 15).
//
// It does what the chain does for such a query and nothing else: allow_query, the query
// rate limit, the query slots and the counters are the chain's own (shared), the answer's bytes go back
// unchanged but for the id, requests_total counts it, a failure is answered SERVFAIL and
// logged through the chain's request log. What it does not take (another kind of request,
// a source allow_query refuses, no free slot, debug logging on) goes through the chain.
type fastQueries struct {
	relay    *relay.Client
	allow    *middleware.AllowLists
	limit    *middleware.Limiter
	slots    middleware.Slots
	counters *middleware.Counters
	log      *middleware.RequestLog
}

// serve relays msg, read on sock from `from` (source: its address, unmapped) with the
// control messages oob, and reports whether it took it.
func (f *fastQueries) serve(sock *rawudp.Conn, msg []byte, from netip.AddrPort, source netip.Addr, oob []byte) bool {
	if !handler.PlainQuery(msg) || f.log.Debug() || !f.allow.Query(source) || !f.slots.Take() {
		return false
	}
	if !f.limit.Allow(source, middleware.KindQuery) {
		f.slots.Release()
		return true // dropped unanswered, and counted, as the RateLimit layer does
	}
	q := &fastQuery{f: f, sock: sock, from: from, control: rawudp.ReplyControl(oob),
		msg: append([]byte(nil), msg...), received: time.Now()}
	if err := f.relay.Send(q.msg, q); err != nil {
		q.Reply(nil, err, nil)
	}
	return true
}

// fastQuery is one query relayed by fastQueries.
type fastQuery struct {
	f        *fastQueries
	sock     *rawudp.Conn
	from     netip.AddrPort
	control  []byte // sends the reply from the address asked (rawudp.ReplyControl)
	msg      []byte // the query as received
	received time.Time
	rcode    int // the answer's, once there is one
}

// Reply implements relay.Replier: the answer goes out with the others the relay read at
// once (Sent); a failure is answered SERVFAIL, as the handler answers a query it could
// not relay.
func (q *fastQuery) Reply(answer []byte, err error, out *rawudp.Outbox) {
	if err == nil {
		q.rcode = int(answer[3] & 0x0f)
		out.Add(q.sock, answer, q.control, q.from, q)
		return
	}
	q.rcode = dns.RcodeServerFailure
	q.Sent(errors.Join(err, q.servfail()))
}

// Sent implements rawudp.Sender: the query is done.
func (q *fastQuery) Sent(err error) {
	q.f.slots.Release()
	q.f.counters.Request(dns.OpcodeQuery, q.rcode)
	if err != nil {
		r := new(dns.Msg)
		r.Unpack(q.msg) //nolint:errcheck // a plain query unpacks
		q.f.log.Done(middleware.NewRequest(q.from, "udp", q.received), r, q.rcode, err)
	}
}

func (q *fastQuery) servfail() error {
	r := new(dns.Msg)
	if err := r.Unpack(q.msg); err != nil {
		return err
	}
	b, err := request.Reply(r, dns.RcodeServerFailure, false).Pack()
	if err != nil {
		return err
	}
	return q.sock.WriteMsg(b, q.control, q.from)
}

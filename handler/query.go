package handler

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/handler/relay"
	"github.com/dnsagent/dnsagent/internal/rawudp"
	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

// query relays an ordinary query to the local DNS server, so Designate can poll serials
// through the agent. Zone transfers are not relayed: the agent is no transfer proxy.
func (h *Handler) query(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if h.Forward == nil {
		return request.Refuse(w, r, request.Refused("no_destination", "query: no query_destination configured"))
	}
	if qt := r.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		return request.Refuse(w, r, request.Refused("not_served", "query: %s is not relayed", dns.Type(qt)))
	}
	answer, err := h.Forward.Exchange(ctx, r, request.From(ctx).Transport == "tcp")
	if err != nil {
		rcode, werr := request.WriteReply(w, r, dns.RcodeServerFailure, false)
		return rcode, errors.Join(err, werr)
	}
	defer answer.Release()
	_, err = w.Write(answer.Bytes)
	return int(answer.Bytes[3] & 0x0f), err
}

// Forwarder relays queries to one server, over the transport the client used. Answers are
// relayed as raw bytes so nothing is lost or rewritten except the message id: a truncated
// UDP answer keeps its TC bit and the client retries over TCP itself. Upstream sockets
// and connections are shared by all queries (package relay).
type Forwarder struct {
	Destination string
	Timeout     time.Duration
	// Poller reads the relay's UDP sockets; nil for one of the relay's own. The service
	// gives the one that reads its UDP listeners (rawudp.Poller).
	Poller *rawudp.Poller

	once   sync.Once
	client *relay.Client
}

// Relay returns the client the forwarder relays through, shared with the UDP fast path.
func (f *Forwarder) Relay() *relay.Client {
	f.once.Do(func() { f.client = relay.New(f.Destination, f.Timeout, f.Poller) })
	return f.client
}

// Exchange sends r to the destination and returns the answer with r's id. The caller
// releases the answer once it was written.
func (f *Forwarder) Exchange(ctx context.Context, r *dns.Msg, tcp bool) (*relay.Answer, error) {
	client := f.Relay()
	// A shallow copy: only the additional section's length changes.
	out := *r
	if out.IsTsig() != nil { // verified here; the destination does not know the client's key
		out.Extra = out.Extra[:len(out.Extra)-1]
	}
	buf := packBuffers.Get().(*[]byte)
	defer packBuffers.Put(buf)
	packed, err := out.PackBuffer(*buf)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if cap(packed) > cap(*buf) {
		*buf = packed[:cap(packed)] // PackBuffer uses the length, not the capacity
	}
	return client.Exchange(ctx, packed, tcp)
}

// packBuffers holds buffers for packing relayed queries (a query fits 512 bytes unless it
// carries large EDNS options).
var packBuffers = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

// PlainQuery reports whether msg, a request as received, is a query the request path
// would relay as it is: opcode QUERY, QR clear, one question whose name is labels of at
// most 255 octets (RFC 1035 §3.1), not AXFR or IXFR, no answer or authority records, and
// in the additional section nothing or one OPT record of version 0 without options (RFC
// 6891 §6.1.2), nothing after it. No middleware layer refuses or changes such a query but
// for its source (allow_query, rate limit) and require_tsig, so it can be relayed as raw
// bytes without unpacking it. Anything else takes the whole request path.
func PlainQuery(msg []byte) bool {
	if len(msg) < 12 || msg[2]&0xf8 != 0 || // QR, opcode
		binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) != 0 ||
		binary.BigEndian.Uint16(msg[8:]) != 0 {
		return false
	}
	end, ok := relay.QuestionEnd(msg)
	if !ok || end-4-12 > 255 {
		return false
	}
	if qt := binary.BigEndian.Uint16(msg[end-4:]); qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		return false
	}
	switch binary.BigEndian.Uint16(msg[10:]) {
	case 0:
		return end == len(msg)
	case 1:
		// An OPT record: root name, type, payload size, extended rcode, version, flags,
		// RDLENGTH 0.
		opt := msg[end:]
		return len(opt) == 11 && opt[0] == 0 && binary.BigEndian.Uint16(opt[1:]) == dns.TypeOPT &&
			opt[6] == 0 && binary.BigEndian.Uint16(opt[9:]) == 0
	}
	return false
}

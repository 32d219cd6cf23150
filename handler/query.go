package handler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/handler/relay"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/miekg/dns"
)

// query relays an ordinary query to the local DNS server, so Designate can poll serials
// through the agent. Zone transfers are not relayed: the agent is no transfer proxy.
func (h *Handler) query(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if h.Forward == nil {
		return refuse(w, r, middleware.Refused("no_destination", "query: no query_destination configured"))
	}
	if qt := r.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		return refuse(w, r, middleware.Refused("not_served", "query: %s is not relayed", dns.Type(qt)))
	}
	answer, err := h.Forward.Exchange(ctx, r, middleware.RequestFrom(ctx).Transport == "tcp")
	if err != nil {
		rcode, werr := middleware.WriteReply(w, r, dns.RcodeServerFailure, false)
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

	once   sync.Once
	client *relay.Client
}

// Exchange sends r to the destination and returns the answer with r's id. The caller
// releases the answer once it was written.
func (f *Forwarder) Exchange(ctx context.Context, r *dns.Msg, tcp bool) (*relay.Answer, error) {
	f.once.Do(func() { f.client = relay.New(f.Destination, f.Timeout) })
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
	return f.client.Exchange(ctx, packed, tcp)
}

// packBuffers holds buffers for packing relayed queries (a query fits 512 bytes unless it
// carries large EDNS options).
var packBuffers = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

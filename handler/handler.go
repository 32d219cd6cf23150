// Package handler answers the requests that passed the middleware: NOTIFY (schedule a
// transfer), Designate's private opcode-14 CREATE/DELETE commands, and ordinary queries
// relayed to the local DNS server. Everything else is refused, as Designate's agent did.
package handler

import (
	"context"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/miekg/dns"
)

// Zones is the transfer engine as the handler sees it.
type Zones interface {
	Notify(ctx context.Context, zone string, n transfer.Notify) error
	Create(ctx context.Context, zone string) error
	Delete(ctx context.Context, zone string) error
}

// Handler dispatches on the opcode.
type Handler struct {
	Zones Zones
	// CreateTimeout bounds how long a CREATE (or DELETE) waits before answering SERVFAIL;
	// it must stay below Designate's poll_timeout (30 s) so the worker sees our answer.
	CreateTimeout time.Duration
	// Forward relays ordinary queries; nil refuses them.
	Forward *Forwarder
}

var _ request.Handler = (*Handler)(nil)

// ServeDNS implements request.Handler.
func (h *Handler) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	switch r.Opcode {
	case dns.OpcodeNotify:
		return h.notify(ctx, w, r)
	case request.OpcodeCC:
		return h.command(ctx, w, r)
	case dns.OpcodeQuery:
		return h.query(ctx, w, r)
	}
	return request.Refuse(w, r, request.Refused("opcode", "opcode %s is not served", request.OpcodeName(r.Opcode)))
}

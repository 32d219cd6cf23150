// Package middleware owns the request path in front of the handler: the context-aware
// Handler type, the chain, and one small layer per concern (metadata, logging, recover,
// validation, access control). It also builds the replies every layer shares.
package middleware

import (
	"context"

	"github.com/miekg/dns"
)

// Handler serves one DNS request. It writes its reply to w itself and returns the rcode
// it answered with and the error that caused a failure, for the layers above to log.
type Handler interface {
	ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error)

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return f(ctx, w, r)
}

// Middleware wraps a Handler in one concern.
type Middleware func(next Handler) Handler

// Chain wraps h so a request passes the layers in the order given, then reaches h.
func Chain(h Handler, layers ...Middleware) Handler {
	for i := len(layers) - 1; i >= 0; i-- {
		h = layers[i](h)
	}
	return h
}

// Server adapts a Handler to miekg/dns's dns.Handler, giving each request the base context.
type Server struct {
	Base    context.Context
	Handler Handler
}

// ServeDNS implements dns.Handler.
func (s Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.Handler.ServeDNS(s.Base, w, r) //nolint:errcheck // logged by the logging layer
}

// AcceptRequests is the listener's MsgAcceptFunc: it ignores responses and admits every
// request. miekg/dns's default answers NOTIMP to every opcode but QUERY and NOTIFY, and
// FORMERR to wrong section counts, from the header alone: opcode QUERY, no question.
// Designate's agent echoed opcode, RD and question in every reply, so the chain answers:
// Validate gives FORMERR to malformed requests (and re-checks the section counts), the
// handler REFUSED to other opcodes.
func AcceptRequests(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR: answering responses is how reflection loops start
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

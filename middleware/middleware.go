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

// AcceptRequests is the listener's MsgAcceptFunc. miekg/dns's default answers NOTIMP to
// every opcode but QUERY and NOTIFY before any handler runs, without echoing the question;
// Designate's agent answered REFUSED with the question echoed, so other request opcodes are
// admitted here and refused by the handler. Responses are still ignored, and the default's
// section-count checks still apply to QUERY and NOTIFY (Validate re-checks the others).
func AcceptRequests(dh dns.Header) dns.MsgAcceptAction {
	action := dns.DefaultMsgAcceptFunc(dh)
	if action == dns.MsgRejectNotImplemented {
		return dns.MsgAccept
	}
	if action == dns.MsgReject {
		CountMalformed() // miekg/dns answers FORMERR itself; the chain never sees it
	}
	return action
}

// Package middleware owns the request path in front of the handler: the chain and one
// small layer per concern (metadata, logging, metrics, recover, rate limits, validation,
// TSIG, access control). The vocabulary the layers share with the handler (the Handler
// type, request metadata, replies, refusals, Designate's codes) is package request.
package middleware

import (
	"context"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

// Middleware wraps a Handler in one concern.
type Middleware func(next request.Handler) request.Handler

// Chain wraps h so a request passes the layers in the order given, then reaches h.
func Chain(h request.Handler, layers ...Middleware) request.Handler {
	for i := len(layers) - 1; i >= 0; i-- {
		h = layers[i](h)
	}
	return h
}

// Server adapts a Handler to miekg/dns's dns.Handler, giving each request the base context.
type Server struct {
	Base    context.Context
	Handler request.Handler
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

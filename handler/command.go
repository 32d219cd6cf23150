package handler

import (
	"context"
	"errors"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/miekg/dns"
)

// Designate's private codes (designate/backend/private_codes.py). SUCCESS and FAILURE are
// defined there but never sent; they are reserved here so nobody reuses the values.
const (
	ClassCC     = 65280 // 0xFF00, the question class of every command
	TypeCreate  = 65282 // 0xFF02
	TypeDelete  = 65283 // 0xFF03
	RcodeCCOK   = 65280 // SUCCESS, reserved
	RcodeCCFail = 65281 // FAILURE, reserved
)

// command runs a CREATE or DELETE. Designate's worker counts a reply as success only with
// AA and NOERROR; anything else makes it retry.
func (h *Handler) command(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	q := r.Question[0]
	zone := backend.CanonicalZone(q.Name)
	if q.Qclass != ClassCC || (q.Qtype != TypeCreate && q.Qtype != TypeDelete) {
		return refuse(w, r, middleware.Refused("not_served", "command class %d type %d: not a CREATE or DELETE", q.Qclass, q.Qtype))
	}
	ctx, cancel := context.WithTimeout(ctx, h.CreateTimeout)
	defer cancel()
	var err error
	if q.Qtype == TypeCreate {
		err = h.Zones.Create(ctx, zone)
	} else {
		err = h.Zones.Delete(ctx, zone)
	}
	if err != nil {
		// Designate's agent sets AA on a DELETE before it calls the backend, so its failed
		// DELETE is SERVFAIL with AA (0xf402); a failed CREATE has no AA (0xf002). Either
		// way the worker retries: it counts only NOERROR with AA as done.
		rcode, werr := middleware.WriteReply(w, r, dns.RcodeServerFailure, q.Qtype == TypeDelete)
		return rcode, errors.Join(err, werr)
	}
	return middleware.WriteReply(w, r, dns.RcodeSuccess, true)
}

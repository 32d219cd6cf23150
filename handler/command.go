package handler

import (
	"context"
	"errors"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/miekg/dns"
)

// command runs a CREATE or DELETE. Designate's worker counts a reply as success only with
// AA and NOERROR; anything else makes it retry.
func (h *Handler) command(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	q := r.Question[0]
	zone := backend.CanonicalZone(q.Name)
	if q.Qclass != request.ClassCC || (q.Qtype != request.TypeCreate && q.Qtype != request.TypeDelete) {
		return request.Refuse(w, r, request.Refused("not_served", "command class %d type %d: not a CREATE or DELETE", q.Qclass, q.Qtype))
	}
	ctx, cancel := context.WithTimeout(ctx, h.CreateTimeout)
	defer cancel()
	var err error
	if q.Qtype == request.TypeCreate {
		err = h.Zones.Create(ctx, zone)
	} else {
		err = h.Zones.Delete(ctx, zone)
	}
	if errors.Is(err, transfer.ErrCheckFailed) {
		err = &request.LoggedError{Err: err}
	}
	if err != nil {
		// Designate's agent sets AA on a DELETE before it calls the backend, so its failed
		// DELETE is SERVFAIL with AA (0xf402); a failed CREATE has no AA (0xf002). Either
		// way the worker retries: it counts only NOERROR with AA as done.
		rcode, werr := request.WriteReply(w, r, dns.RcodeServerFailure, q.Qtype == request.TypeDelete)
		return rcode, errors.Join(err, werr)
	}
	return request.WriteReply(w, r, dns.RcodeSuccess, true)
}

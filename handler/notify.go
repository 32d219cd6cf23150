package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/miekg/dns"
)

// notify acknowledges a NOTIFY at once (RFC 1996) and leaves the transfer to the engine.
func (h *Handler) notify(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	q := r.Question[0]
	if q.Qclass != dns.ClassINET || q.Qtype != dns.TypeSOA {
		return request.Refuse(w, r, request.Refused("not_served", "NOTIFY for %s %s: only IN SOA is served",
			dns.Class(q.Qclass), dns.Type(q.Qtype)))
	}
	zone := backend.CanonicalZone(q.Name)
	n := transfer.Notify{Source: request.From(ctx).Source.Addr()}
	// RFC 1996 §3.7: the answer section may carry the new SOA, a hint of the serial.
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, q.Name) {
			n.Serial, n.HasSerial = soa.Serial, true
		}
	}
	err := h.Zones.Notify(ctx, zone, n)
	switch {
	case errors.Is(err, transfer.ErrUnknownZone):
		return request.Refuse(w, r, &request.RefusedError{Reason: "unknown_zone", Err: fmt.Errorf("NOTIFY for %s: %w", zone, err)})
	case err != nil:
		rcode, werr := request.WriteReply(w, r, dns.RcodeServerFailure, false)
		return rcode, errors.Join(err, werr)
	}
	return request.WriteReply(w, r, dns.RcodeSuccess, true)
}

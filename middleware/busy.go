package middleware

import (
	"context"
	"fmt"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

// Busy caps how many requests of the slow kinds are served at once: a CREATE waits for
// its transfer (up to create_timeout) and a relayed query for the destination, and each
// holds one of the listener's slots meanwhile. Past its cap a request is answered
// SERVFAIL at once (Designate's worker retries a CREATE it did not get NOERROR+AA for), so
// a flood of them leaves the other slots to NOTIFYs. Kinds without a cap pass.
func Busy(slots map[string]Slots) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			kind := Kind(r)
			sem := slots[kind]
			if sem == nil {
				return next.ServeDNS(ctx, w, r)
			}
			if sem.Take() {
				defer sem.Release()
				return next.ServeDNS(ctx, w, r)
			}
			rcode, err := request.WriteReply(w, r, dns.RcodeServerFailure, false)
			if err == nil {
				err = fmt.Errorf("busy: %d %s requests are being served already; try again later", cap(sem), kind)
			}
			return rcode, err
		})
	}
}

// Slots counts the requests of one kind being served, up to its capacity. The UDP query
// fast path takes query slots from the same Slots as Busy.
type Slots chan struct{}

// NewSlots returns n slots.
func NewSlots(n int) Slots { return make(Slots, n) }

// Take takes a slot if one is free.
func (s Slots) Take() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release gives back a slot Take took.
func (s Slots) Release() { <-s }

package middleware

import (
	"context"
	"fmt"

	"github.com/miekg/dns"
)

// Busy caps how many requests of the slow kinds are served at once: a CREATE waits for
// its transfer (up to create_timeout) and a relayed query for the destination, and each
// holds one of the listener's slots meanwhile. Past its cap a request is answered
// SERVFAIL at once (Designate's worker retries a CREATE it did not get NOERROR+AA for), so
// a flood of them leaves the other slots to NOTIFYs. Kinds without a cap pass.
func Busy(limits map[string]int) Middleware {
	slots := map[string]chan struct{}{}
	for kind, n := range limits {
		slots[kind] = make(chan struct{}, n)
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			kind := Kind(r)
			sem := slots[kind]
			if sem == nil {
				return next.ServeDNS(ctx, w, r)
			}
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				return next.ServeDNS(ctx, w, r)
			default:
				rcode, err := WriteReply(w, r, dns.RcodeServerFailure, false)
				if err == nil {
					err = fmt.Errorf("busy: %d %s requests are being served already; try again later", cap(sem), kind)
				}
				return rcode, err
			}
		})
	}
}

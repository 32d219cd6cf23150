package middleware

import (
	"context"
	"errors"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "requests_total",
		Help: "DNS requests answered, by opcode and rcode.",
	}, []string{"opcode", "rcode"})
	refusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "refused_total",
		Help: "Requests answered REFUSED, by reason (acl, unknown_zone, opcode, not_served, no_destination).",
	}, []string{"reason"})
	malformedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "malformed_total",
		Help: "Messages dropped or answered FORMERR because they could not be a valid request.",
	})
)

// RegisterMetrics adds the request metrics to reg.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(requestsTotal, refusedTotal, malformedTotal, rateLimitedTotal)
}

// CountMalformed counts a message that never reached the chain (unparsable bytes).
func CountMalformed() { malformedTotal.Inc() }

// queryCounters are requests_total's children for opcode QUERY by rcode (0-15), looked up
// once: relayed queries are the bulk of the requests, and a lookup by label values hashes
// and locks.
var queryCounters = func() (c [16]prometheus.Counter) {
	for rcode := range c {
		c[rcode] = requestsTotal.WithLabelValues(request.OpcodeName(dns.OpcodeQuery), request.RcodeName(rcode))
	}
	return c
}()

// CountRequest counts a request answered with rcode in requests_total.
func CountRequest(opcode, rcode int) {
	if opcode == dns.OpcodeQuery && rcode >= 0 && rcode < len(queryCounters) {
		queryCounters[rcode].Inc()
		return
	}
	requestsTotal.WithLabelValues(request.OpcodeName(opcode), request.RcodeName(rcode)).Inc()
}

// Metrics counts every request by opcode and rcode, refusals by reason, FORMERRs as malformed.
func Metrics() Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			rcode, err := next.ServeDNS(ctx, w, r)
			if errors.Is(err, errRateLimited) {
				return rcode, err // dropped unanswered: counted in rate_limited_total
			}
			CountRequest(r.Opcode, rcode)
			var refused *request.RefusedError
			switch {
			case errors.As(err, &refused):
				refusedTotal.WithLabelValues(refused.Reason).Inc()
			case rcode == dns.RcodeFormatError:
				malformedTotal.Inc()
			}
			return rcode, err
		})
	}
}

package middleware

import (
	"context"
	"errors"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Counters are one agent's request metrics: requests_total, refused_total,
// malformed_total and rate_limited_total. Each agent has its own, registered in its own
// registry (Register), so two agents in one process never count into each other's, as
// Prometheus's own components take the registry they report to.
type Counters struct {
	requests    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	malformed   prometheus.Counter
	rateLimited *prometheus.CounterVec

	// queries are requests' children for opcode QUERY by rcode (0-15), looked up once:
	// relayed queries are the bulk of the requests, and a lookup by label values hashes
	// and locks.
	queries [16]prometheus.Counter
}

// NewCounters returns counters at zero, not registered anywhere yet.
func NewCounters() *Counters {
	c := &Counters{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsagent", Name: "requests_total",
			Help: "DNS requests answered, by opcode and rcode.",
		}, []string{"opcode", "rcode"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsagent", Name: "refused_total",
			Help: "Requests answered REFUSED, by reason (acl, unknown_zone, opcode, not_served, no_destination).",
		}, []string{"reason"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dnsagent", Name: "malformed_total",
			Help: "Messages dropped or answered FORMERR because they could not be a valid request.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsagent", Name: "rate_limited_total",
			Help: "Requests dropped by the per-source rate limit, by kind (notify, command, query; udp: the listener's own limit on datagrams).",
		}, []string{"kind"}),
	}
	for rcode := range c.queries {
		c.queries[rcode] = c.requests.WithLabelValues(request.OpcodeName(dns.OpcodeQuery), request.RcodeName(rcode))
	}
	return c
}

// Register adds the counters to reg.
func (c *Counters) Register(reg prometheus.Registerer) {
	reg.MustRegister(c.requests, c.refused, c.malformed, c.rateLimited)
}

// Malformed counts a message that never reached the chain (unparsable bytes).
func (c *Counters) Malformed() { c.malformed.Inc() }

// Request counts a request answered with rcode in requests_total.
func (c *Counters) Request(opcode, rcode int) {
	if opcode == dns.OpcodeQuery && rcode >= 0 && rcode < len(c.queries) {
		c.queries[rcode].Inc()
		return
	}
	c.requests.WithLabelValues(request.OpcodeName(opcode), request.RcodeName(rcode)).Inc()
}

// Metrics counts in c every request by opcode and rcode, refusals by reason, FORMERRs as malformed.
func Metrics(c *Counters) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			rcode, err := next.ServeDNS(ctx, w, r)
			if errors.Is(err, errRateLimited) {
				return rcode, err // dropped unanswered: counted in rate_limited_total
			}
			c.Request(r.Opcode, rcode)
			var refused *request.RefusedError
			switch {
			case errors.As(err, &refused):
				c.refused.WithLabelValues(refused.Reason).Inc()
			case rcode == dns.RcodeFormatError:
				c.malformed.Inc()
			}
			return rcode, err
		})
	}
}

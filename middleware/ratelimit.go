package middleware

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/logsample"
	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// maxTrackedSources bounds the Limiter's memory under a spoofed-source flood: when full,
// idle buckets are dropped, and if none is idle new sources share one overflow bucket.
const maxTrackedSources = 100_000

// RateLimit drops requests beyond rate per second per source and kind (burst: one second's
// worth), silently: answering a flood, even with REFUSED, would make the agent an amplifier.
// Each limited source is logged once per interval, not once per packet. l (NewLimiter) has
// the rates by Kind; the UDP query fast path shares it.
func RateLimit(l *Limiter) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			if !l.Allow(request.From(ctx).Source.Addr(), Kind(r)) {
				return dns.RcodeRefused, &request.RefusedError{Reason: "rate_limit", Err: errRateLimited}
			}
			return next.ServeDNS(ctx, w, r)
		})
	}
}

// NewLimiter limits each kind to its rate; a kind without a rate is not limited. Drops
// are counted in counters' rate_limited_total.
func NewLimiter(rates map[string]float64, counters *Counters, log *zap.Logger, interval time.Duration, now func() time.Time) *Limiter {
	return &Limiter{rates: rates, limited: counters.rateLimited, buckets: map[bucketKey]*bucket{}, log: log,
		sample: logsample.New[bucketKey](interval, now), now: now}
}

// Allow tells whether source may send one more of kind now.
func (l *Limiter) Allow(source netip.Addr, kind string) bool {
	rate := l.rates[kind]
	if rate <= 0 || l.allow(source, kind, rate) {
		return true
	}
	l.limited.WithLabelValues(kind).Inc()
	if n, due := l.sample.Due(bucketKey{source, kind}); due {
		l.log.Warn("rate limit: dropping requests", zap.Stringer("source", source), zap.String("kind", kind),
			zap.Int("dropped", n), zap.Float64("rate_per_second", rate))
	}
	return false
}

var errRateLimited = errors.New("dropped: over the rate limit")

type bucketKey struct {
	source netip.Addr
	kind   string
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Limiter drops what a source sends of a kind beyond that kind's rate per second (burst:
// one second's worth), counting the drops and logging each limited source once per
// interval. RateLimit uses one per kind of request; the UDP listener one on datagrams.
type Limiter struct {
	rates   map[string]float64
	limited *prometheus.CounterVec // rate_limited_total
	log     *zap.Logger
	sample  *logsample.Sampler[bucketKey] // one line per limited source and kind per interval
	now     func() time.Time

	mu      sync.Mutex
	buckets map[bucketKey]*bucket
}

func (l *Limiter) allow(source netip.Addr, kind string, rate float64) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	key := bucketKey{source, kind}
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxTrackedSources {
			l.evictIdle(now)
		}
		if len(l.buckets) >= maxTrackedSources {
			key = bucketKey{kind: kind} // overflow: every new source shares one bucket
		}
		if b = l.buckets[key]; b == nil {
			b = &bucket{tokens: rate, last: now}
			l.buckets[key] = b
		}
	}
	b.tokens = min(rate, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// evictIdle forgets sources whose bucket has refilled: they are indistinguishable from new.
func (l *Limiter) evictIdle(now time.Time) {
	for key, b := range l.buckets {
		if now.Sub(b.last).Seconds()*l.rates[key.kind] >= l.rates[key.kind] {
			delete(l.buckets, key)
		}
	}
}

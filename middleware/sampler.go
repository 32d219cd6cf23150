package middleware

import (
	"net/netip"
	"sync"
	"time"
)

// maxSampledSources bounds the sampler's memory; past it, the map starts over.
const maxSampledSources = 10_000

// sampler lets a layer log an event once per source per interval, with the count of
// events since its last line.
type sampler struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last map[netip.Addr]*sample
}

type sample struct {
	at    time.Time
	count int
}

func newSampler(interval time.Duration, now func() time.Time) *sampler {
	return &sampler{interval: interval, now: now, last: map[netip.Addr]*sample{}}
}

// due counts an event from source and reports whether a line is due, with the count.
func (s *sampler) due(source netip.Addr) (int, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.last[source]
	if e == nil {
		if len(s.last) >= maxSampledSources {
			s.last = map[netip.Addr]*sample{}
		}
		e = &sample{}
		s.last[source] = e
	}
	e.count++
	if !e.at.IsZero() && now.Sub(e.at) < s.interval {
		return 0, false
	}
	n := e.count
	e.at, e.count = now, 0
	return n, true
}

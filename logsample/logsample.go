// Package logsample lets a component log a repeated event once per key (a source, a kind
// of failure) per interval, with the count of events since its last line, so a flood of
// them makes a few log lines, not one each.
package logsample

import (
	"sync"
	"time"
)

// maxSampledKeys bounds the sampler's memory; past it, the map starts over.
const maxSampledKeys = 10_000

// Sampler decides which events of a key get a log line: the first, then one per interval.
type Sampler[K comparable] struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last map[K]*sample
}

type sample struct {
	at    time.Time
	count int
}

// New returns a Sampler with one line per key per interval; now is the clock.
func New[K comparable](interval time.Duration, now func() time.Time) *Sampler[K] {
	return &Sampler[K]{interval: interval, now: now, last: map[K]*sample{}}
}

// Due counts an event of key and reports whether a line is due, with the count of events
// since the last line (this one included).
func (s *Sampler[K]) Due(key K) (int, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.last[key]
	if e == nil {
		if len(s.last) >= maxSampledKeys {
			s.last = map[K]*sample{}
		}
		e = &sample{}
		s.last[key] = e
	}
	e.count++
	if !e.at.IsZero() && now.Sub(e.at) < s.interval {
		return 0, false
	}
	n := e.count
	e.at, e.count = now, 0
	return n, true
}

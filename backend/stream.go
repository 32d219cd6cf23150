package backend

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"
)

// StreamCheck is what every backend requires of a zone's record stream: the zone's own SOA
// first, no other SOA, every owner inside the zone, so a confused or hostile primary
// cannot make a backend store records for names it has no authority over, and nothing
// CheckRecord refuses.
type StreamCheck struct {
	// Zone is the zone the stream is for, fully qualified.
	Zone string
	// DropClosingSOA drops a copy of the zone's SOA later in the stream (the SOA that
	// closes an AXFR, should a source pass it on) instead of refusing it. A different SOA
	// is refused either way: a master file with two SOAs does not load.
	DropClosingSOA bool
}

// Read reads src to its end, checking every batch before it hands it to each, and returns
// the zone's SOA. It stops at the first error: ctx ending, the transfer failing, a record
// that breaks the rules, each failing, or a stream that ends before its SOA. Only io.EOF
// itself ends a stream: a wrapped EOF is a connection that broke.
func (c StreamCheck) Read(ctx context.Context, src Source, each func([]dns.RR) error) (*dns.SOA, error) {
	s := streamState{StreamCheck: c}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := src.Next()
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("transfer failed: %w", err)
		}
		batch, checkErr := s.check(batch)
		if checkErr != nil {
			return nil, checkErr
		}
		if len(batch) > 0 {
			if err := each(batch); err != nil {
				return nil, err
			}
		}
		if err == io.EOF {
			break
		}
	}
	if s.soa == nil {
		return nil, fmt.Errorf("empty stream: no SOA for %s", c.Zone)
	}
	return s.soa, nil
}

type streamState struct {
	StreamCheck
	soa *dns.SOA // the first record, once seen
}

// check checks one batch and returns the records to keep. The source's slice is never
// changed: a batch that loses its closing SOA is copied.
func (s *streamState) check(batch []dns.RR) ([]dns.RR, error) {
	var kept []dns.RR // nil while every record is kept
	for i, rr := range batch {
		keep, err := s.record(rr)
		switch {
		case err != nil:
			return nil, err
		case !keep && kept == nil:
			kept = append(make([]dns.RR, 0, len(batch)), batch[:i]...)
		case keep && kept != nil:
			kept = append(kept, rr)
		}
	}
	if kept == nil {
		return batch, nil
	}
	return kept, nil
}

// record checks one record; keep is false for a closing SOA that is dropped.
func (s *streamState) record(rr dns.RR) (keep bool, err error) {
	h := rr.Header()
	if s.soa == nil {
		soa, ok := rr.(*dns.SOA)
		if !ok || !strings.EqualFold(h.Name, s.Zone) {
			return false, fmt.Errorf("stream does not start with the SOA of %s (first record: %s)", s.Zone, rr)
		}
		s.soa = soa
		return true, nil
	}
	if h.Rrtype == dns.TypeSOA {
		if !s.DropClosingSOA {
			return false, fmt.Errorf("second SOA in the stream: %s", rr)
		}
		if !dns.IsDuplicate(rr, s.soa) {
			return false, fmt.Errorf("second, different SOA in the stream: %s", rr)
		}
		return false, nil
	}
	if !InZone(s.Zone, h.Name) {
		return false, fmt.Errorf("record %s is outside zone %s", rr, s.Zone)
	}
	return true, CheckRecord(s.Zone, rr)
}

// InZone is dns.IsSubDomain(zone, name), without its allocations for the usual case: name
// ends in zone (ASCII case folded, RFC 4343, as dns.IsSubDomain compares) right after an unescaped dot. Anything else
// (escapes in zone, a name written another way) is left to dns.IsSubDomain.
func InZone(zone, name string) bool {
	cut := len(name) - len(zone)
	if cut < 0 || strings.IndexByte(zone, '\\') >= 0 || !equalFoldASCII(name[cut:], zone) {
		return dns.IsSubDomain(zone, name)
	}
	if cut == 0 || zone == "." {
		return true
	}
	if name[cut-1] != '.' {
		return dns.IsSubDomain(zone, name)
	}
	slashes := 0 // before the dot: an odd number escape it
	for i := cut - 2; i >= 0 && name[i] == '\\'; i-- {
		slashes++
	}
	return slashes%2 == 0 || dns.IsSubDomain(zone, name)
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

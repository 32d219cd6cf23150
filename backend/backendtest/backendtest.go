// Package backendtest owns the conformance suite every backend must pass, and the small
// helpers (record streams, test zones) that tests of other packages reuse.
package backendtest

import (
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// Zone builds a test zone: the SOA (with serial), one NS, then n records alternating
// between A and TXT on owners host-0, host-1, ... below the zone.
func Zone(name string, serial uint32, n int) []dns.RR {
	rrs := []dns.RR{
		&dns.SOA{
			Hdr:     dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
			Ns:      "ns1." + name,
			Mbox:    "hostmaster." + name,
			Serial:  serial,
			Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300,
		},
		&dns.NS{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 3600},
			Ns:  "ns1." + name,
		},
	}
	for i := range n {
		owner := fmt.Sprintf("host-%d.%s", i, name)
		if i%2 == 0 {
			rrs = append(rrs, &dns.A{
				Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   []byte{192, 0, 2, byte(i % 256)},
			})
		} else {
			rrs = append(rrs, &dns.TXT{
				Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
				Txt: []string{fmt.Sprintf("serial %d record %d", serial, i)},
			})
		}
	}
	return rrs
}

// Batches cuts records into batches of at most size records, the way a transfer delivers
// them message by message.
func Batches(rrs []dns.RR, size int) [][]dns.RR {
	var batches [][]dns.RR
	for len(rrs) > size {
		batches = append(batches, rrs[:size])
		rrs = rrs[size:]
	}
	if len(rrs) > 0 {
		batches = append(batches, rrs)
	}
	return batches
}

// Stream returns a Source yielding the batches in order, then io.EOF.
func Stream(batches ...[]dns.RR) backend.Source {
	return &stream{batches: batches, end: io.EOF}
}

// FailingStream returns a Source yielding the batches in order, then err: a transfer that
// broke after delivering part of the zone.
func FailingStream(err error, batches ...[]dns.RR) backend.Source {
	return &stream{batches: batches, end: err}
}

type stream struct {
	mu      sync.Mutex
	batches [][]dns.RR
	end     error
}

func (s *stream) Next() ([]dns.RR, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batches) == 0 {
		return nil, s.end
	}
	batch := s.batches[0]
	s.batches = s.batches[1:]
	return batch, nil
}

// DirNames lists a directory, so tests of backends that write files can see temp files
// and stray writes.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

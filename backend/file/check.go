package file

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// recordCheck enforces what a stream must look like, batch by batch: the zone's own SOA
// first, no other SOA, and every owner inside the zone, so a confused or hostile primary
// cannot make us store records for names it has no authority over.
type recordCheck struct {
	zone    string
	seenSOA bool
}

// check checks one batch. A second SOA (the closing SOA of an AXFR, which the transfer
// leaves out, or worse) is refused: a master file with two SOAs does not load.
func (c *recordCheck) check(rrs []dns.RR) error {
	for _, rr := range rrs {
		h := rr.Header()
		switch {
		case !c.seenSOA:
			if h.Rrtype != dns.TypeSOA || !strings.EqualFold(h.Name, c.zone) {
				return fmt.Errorf("stream does not start with the SOA of %s (first record: %s)", c.zone, rr)
			}
			c.seenSOA = true
		case h.Rrtype == dns.TypeSOA:
			return fmt.Errorf("second SOA in the stream: %s", rr)
		case !dns.IsSubDomain(c.zone, h.Name):
			return fmt.Errorf("record %s is outside zone %s", rr, c.zone)
		}
	}
	return nil
}

// done reports a stream that ended before its SOA.
func (c *recordCheck) done() error {
	if !c.seenSOA {
		return fmt.Errorf("empty stream: no SOA for %s", c.zone)
	}
	return nil
}

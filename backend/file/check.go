package file

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// recordCheck enforces what a stream must look like, batch by batch: the zone's own SOA
// first, and every owner inside the zone, so a confused or hostile primary cannot make us
// write records for names it has no authority over.
type recordCheck struct {
	zone string
	soa  *dns.SOA
}

// filter checks one batch and drops the copy of the SOA that closes an AXFR, if the
// source passed it on (a master file with two SOAs does not load); a different SOA later
// in the stream is an error.
func (c *recordCheck) filter(rrs []dns.RR) ([]dns.RR, error) {
	kept := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		owner := rr.Header().Name
		if c.soa == nil {
			soa, ok := rr.(*dns.SOA)
			if !ok || !strings.EqualFold(owner, c.zone) {
				return nil, fmt.Errorf("stream does not start with the SOA of %s (first record: %s)", c.zone, rr)
			}
			c.soa = soa
			kept = append(kept, rr)
			continue
		}
		if !dns.IsSubDomain(c.zone, owner) {
			return nil, fmt.Errorf("record %s is outside zone %s", rr, c.zone)
		}
		if soa, ok := rr.(*dns.SOA); ok {
			if !dns.IsDuplicate(soa, c.soa) {
				return nil, fmt.Errorf("second, different SOA in the stream: %s", rr)
			}
			continue
		}
		kept = append(kept, rr)
	}
	return kept, nil
}

// done reports a stream that ended before its SOA.
func (c *recordCheck) done() error {
	if c.soa == nil {
		return fmt.Errorf("empty stream: no SOA for %s", c.zone)
	}
	return nil
}

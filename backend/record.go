package backend

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// CheckRecord refuses a transferred record no zone may hold, whatever the backend: a
// second SOA below the apex (a master file with one does not load), a class other than IN
// (the agent's zones are IN, and named refuses a CH record in an IN zone), a meta-type or
// Q-type (OPT, and 128 to 255: TKEY, TSIG, IXFR, AXFR, ANY; RFC 6895 §3.1), and a CAA tag
// a zone file cannot write (RFC 8659 §4.1: 1 to 15 letters and digits). Each would reach
// a zone file or a row that the DNS server then fails to load.
func CheckRecord(zone string, rr dns.RR) error {
	h := rr.Header()
	switch {
	case h.Rrtype == dns.TypeSOA && !strings.EqualFold(h.Name, zone):
		return fmt.Errorf("SOA record below the apex of %s: %s", zone, rr)
	case h.Class != dns.ClassINET:
		return fmt.Errorf("record of class %s, not IN: %s", dns.Class(h.Class), rr)
	case h.Rrtype == dns.TypeOPT || h.Rrtype >= 128 && h.Rrtype <= 255 || h.Rrtype == dns.TypeNone:
		return fmt.Errorf("meta-type %s is not zone data: %s", dns.Type(h.Rrtype), rr)
	}
	if caa, ok := rr.(*dns.CAA); ok && !validCAATag(caa.Tag) {
		return fmt.Errorf("CAA tag %q is not 1 to 15 letters and digits (RFC 8659 §4.1): %s", caa.Tag, rr)
	}
	return nil
}

func validCAATag(tag string) bool {
	if len(tag) < 1 || len(tag) > 15 {
		return false
	}
	for i := range len(tag) {
		c := tag[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

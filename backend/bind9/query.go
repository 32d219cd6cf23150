package bind9

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// querySOA asks named (query_destination) for the zone's SOA. unserved is "" only for an
// authoritative answer holding the zone's own SOA; otherwise it says what named answered
// instead: REFUSED (no such zone), SERVFAIL (configured but not loaded, e.g. while named
// starts), an answer from a parent zone. Whether the zone exists is for showzone to say.
func (b *Backend) querySOA(ctx context.Context, zone string) (serial uint32, unserved string, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RNDCTimeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	m.RecursionDesired = false
	c := dns.Client{Net: "udp"}
	r, _, err := c.ExchangeContext(ctx, m, b.cfg.QueryDestination)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, b.cfg.QueryDestination)
	}
	if err != nil {
		return 0, "", fmt.Errorf("SOA query to named at %s: %w", b.cfg.QueryDestination, err)
	}
	switch {
	case r.Rcode != dns.RcodeSuccess:
		return 0, dns.RcodeToString[r.Rcode], nil
	case !r.Authoritative:
		return 0, "a non-authoritative answer", nil
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, zone) {
			return soa.Serial, "", nil
		}
	}
	return 0, "an answer without the zone's SOA", nil
}

// waitServed waits until named serves the zone at serial: rndc reload and thaw only
// start a load, and the caller must be able to rely on Serial right after it returns.
func (b *Backend) waitServed(ctx context.Context, zone string, serial uint32) error {
	var (
		got      uint32
		unserved string
		err      error
	)
	ok := poll(ctx, b.cfg.RNDCTimeout, func() bool {
		got, unserved, err = b.querySOA(ctx, zone)
		return err == nil && unserved == "" && got == serial
	})
	switch {
	case ok:
		return nil
	case err != nil:
		return fmt.Errorf("waiting for named to serve serial %d: %w", serial, err)
	case unserved != "":
		return fmt.Errorf("named answers %s for the zone %s after loading it (see named's log)", unserved, b.cfg.RNDCTimeout)
	default:
		return fmt.Errorf("named still serves serial %d, not %d, %s after loading it (see named's log)", got, serial, b.cfg.RNDCTimeout)
	}
}

// poll calls cond until it holds, ctx ends or timeout passes, checking often at first and
// less often later; it returns whether cond held.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := 2 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

package bench

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// serialProbe reports the serial a target serves for a zone, or false when it does not
// serve the zone (yet, or any more).
type serialProbe func() (uint32, bool)

// dnsProbe asks server over UDP for the zone's SOA; only an authoritative NOERROR answer
// counts as served.
func dnsProbe(server, zone string) serialProbe {
	return func() (uint32, bool) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
		m.RecursionDesired = false
		r, err := harness.Exchange("udp", server, m, time.Second)
		if err != nil || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			return 0, false
		}
		for _, rr := range r.Answer {
			if soa, ok := rr.(*dns.SOA); ok {
				return soa.Serial, true
			}
		}
		return 0, false
	}
}

// fileProbe reads the SOA at the top of a zone file: for the file backend, the zone is
// "served" once the new file is in place.
func fileProbe(path, zone string) serialProbe {
	return func() (uint32, bool) {
		head, err := readHead(path, 4096)
		if err != nil {
			return 0, false
		}
		if i := bytes.LastIndexByte(head, '\n'); i >= 0 {
			head = head[:i+1] // whole lines only
		}
		zp := dns.NewZoneParser(bytes.NewReader(head), dns.Fqdn(zone), "")
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			if soa, isSOA := rr.(*dns.SOA); isSOA {
				return soa.Serial, true
			}
		}
		return 0, false
	}
}

// waitFor polls cond until it holds or timeout passes since start, and returns the time
// from start. The poll interval grows with the wait (1/200 of it, 1 ms to 100 ms), so the
// measurement error stays under about 0.5% while a long wait costs little polling.
func waitFor(start time.Time, timeout time.Duration, cond func() bool) (time.Duration, error) {
	for {
		if cond() {
			return time.Since(start), nil
		}
		el := time.Since(start)
		if el > timeout {
			return el, fmt.Errorf("not done after %v", timeout.Round(time.Second))
		}
		time.Sleep(min(max(el/200, time.Millisecond), 100*time.Millisecond))
	}
}

// servesSerial is a condition: the probe answers exactly serial.
func servesSerial(p serialProbe, serial uint32) func() bool {
	return func() bool { s, ok := p(); return ok && s == serial }
}

// gone is a condition: the probe does not serve the zone.
func gone(p serialProbe) func() bool {
	return func() bool { _, ok := p(); return !ok }
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianInt(vs []int64) int64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxInt(vs []int64) int64 {
	var m int64
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// fmtDur prints a duration with three significant digits in a fitting unit.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
}

func fmtMiB(b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func fmtRatio(num, den time.Duration) string {
	if num <= 0 || den <= 0 {
		return "–"
	}
	r := float64(num) / float64(den)
	if r < 0.1 {
		return fmt.Sprintf("%.3f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// sizeName is 10k, 100k, 1M.
func sizeName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return fmt.Sprint(n)
	}
}

func zoneName(n int) string { return "z" + strings.ToLower(sizeName(n)) + ".bench." }

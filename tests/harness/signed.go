package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// SignedPolicies defines two dnssec-policy blocks for PrimaryOptions.ExtraConfig: "nsec"
// and "nsec3" (RFC 9276 parameters: no extra iterations, no salt), one ECDSA P-256 CSK
// that never rolls, so a test sees no key event.
const SignedPolicies = `dnssec-policy "nsec" { keys { csk lifetime unlimited algorithm ecdsap256sha256; }; };
dnssec-policy "nsec3" { keys { csk lifetime unlimited algorithm ecdsap256sha256; }; nsec3param iterations 0 optout no salt-length 0; };
`

// SignedZoneOptions is the zone statement that signs a zone with one of SignedPolicies.
// named 9.18 needs inline-signing for a policy on a zone that takes no updates; the
// unsigned file stays as written and named serves (and transfers) the signed copy, with
// serials of its own.
func SignedZoneOptions(policy string) string {
	return fmt.Sprintf("dnssec-policy %q; inline-signing yes;", policy)
}

// ReloadZone rewrites the (unsigned) zone file of name and runs `rndc reload NAME`
// without waiting for a serial: with inline signing the served serial is named's own.
func (p *Primary) ReloadZone(t testing.TB, name, text string) {
	t.Helper()
	if err := p.writeZone(name, text); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.opts.Zones[name] = text
	p.mu.Unlock()
	zone := strings.TrimSuffix(dns.Fqdn(name), ".")
	if out, err := p.Rndc("reload", zone); err != nil {
		t.Fatalf("rndc reload %s: %v: %s\nnamed output:\n%s", zone, err, out, p.out)
	}
}

// WaitSigned waits (30 s at most) until named serves zone signed (an RRSIG with the SOA)
// at a serial above after, with the serial unchanged for a second (named signs, and
// builds an NSEC3 chain, in several versions), and returns that serial.
func (p *Primary) WaitSigned(t testing.TB, zone string, after uint32) uint32 {
	t.Helper()
	var serial uint32
	var since time.Time
	ok := Eventually(30*time.Second, 100*time.Millisecond, func() bool {
		s, signed := p.signedSerial(zone)
		switch {
		case !signed || s <= after:
			since = time.Time{}
			return false
		case s != serial || since.IsZero():
			serial, since = s, time.Now()
			return false
		}
		return time.Since(since) >= time.Second
	})
	if !ok {
		t.Fatalf("named does not serve %s signed above serial %d after 30 s (last %d)\nnamed output:\n%s", zone, after, serial, p.out)
	}
	return serial
}

func (p *Primary) signedSerial(zone string) (uint32, bool) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	m.SetEdns0(4096, true)
	r, err := Exchange("tcp", p.Addr(), m, 2*time.Second)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		return 0, false
	}
	var serial uint32
	signed := false
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.SOA:
			serial = v.Serial
		case *dns.RRSIG:
			signed = v.TypeCovered == dns.TypeSOA
		}
	}
	return serial, signed && serial != 0
}

// TrustAnchor writes a delv anchor file (trust-anchors { ZONE static-key ... };) holding
// the zone's key-signing DNSKEYs as named serves them, and returns its path.
func (p *Primary) TrustAnchor(t testing.TB, zone string) string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeDNSKEY)
	r, err := Exchange("tcp", p.Addr(), m, 2*time.Second)
	if err != nil {
		t.Fatalf("DNSKEY %s from the primary: %v", zone, err)
	}
	var b strings.Builder
	b.WriteString("trust-anchors {\n")
	for _, rr := range r.Answer {
		if k, ok := rr.(*dns.DNSKEY); ok && k.Flags&dns.SEP != 0 {
			fmt.Fprintf(&b, "\t%q static-key %d %d %d %q;\n", k.Hdr.Name, k.Flags, k.Protocol, k.Algorithm, k.PublicKey)
		}
	}
	b.WriteString("};\n")
	if !strings.Contains(b.String(), "static-key") {
		t.Fatalf("the primary serves no KSK for %s: %v", zone, r)
	}
	path := filepath.Join(t.TempDir(), "anchor-"+strings.TrimSuffix(dns.Fqdn(zone), "."))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

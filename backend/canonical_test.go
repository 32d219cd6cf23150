package backend

import (
	"bytes"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestAppendCanonical(t *testing.T) {
	form := func(s string) ([]byte, int) {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		b, owner, err := AppendCanonical([]byte("prefix"), rr)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:6]) != "prefix" {
			t.Fatalf("%s: the buffer's start was changed", s)
		}
		return b[6:], owner
	}
	same := func(a, b string, want bool) {
		t.Helper()
		fa, _ := form(a)
		fb, _ := form(b)
		if bytes.Equal(fa, fb) != want {
			t.Errorf("%q and %q: equal %v, want %v", a, b, !want, want)
		}
	}
	same("WWW.Example.COM. 300 IN A 192.0.2.1", "www.example.com. 300 IN A 192.0.2.1", true)
	same("www.example.com. 300 IN A 192.0.2.1", "www.example.com. 600 IN A 192.0.2.1", false)
	same("a.example.com. 300 IN CNAME Target.example.com.", "a.example.com. 300 IN CNAME target.example.com.", false)
	if wire, owner := form("www.example.com. 300 IN A 192.0.2.1"); owner != 17 || wire[owner-1] != 0 {
		t.Errorf("owner name length %d, want 17 (www.example.com. with its root label)", owner)
	}
}

// appendCanonicalCommon writes what dns.PackRR packs, for the sample records as parsed and
// as unpacked, and for random strings and owners.
func TestAppendCanonicalMatches(t *testing.T) {
	fast := map[uint16]bool{}
	check := func(rr dns.RR) {
		t.Helper()
		want, wantOwner, wantErr := appendCanonicalPacked([]byte("x"), rr)
		got, owner, ok := appendCanonicalCommon([]byte("x"), rr)
		if !ok {
			return
		}
		fast[rr.Header().Rrtype] = true
		if wantErr != nil || !bytes.Equal(got, want) || owner != wantOwner {
			t.Errorf("%s:\n got %x (owner %d)\nwant %x (owner %d, %v)", rr, got, owner, want, wantOwner, wantErr)
		}
	}
	for _, l := range sampleLines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		check(rr)
		check(fromWire(t, rr))
	}
	hdr := dns.RR_Header{Name: "h.Example.com.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 7}
	check(&dns.TXT{Hdr: hdr, Txt: []string{`dangling\`, `\x`, `\1`, `\12`, `\123`, `\999`, `\`}})
	check(&dns.TXT{Hdr: hdr, Txt: []string{strings.Repeat("a", 256)}})
	check(&dns.A{Hdr: dns.RR_Header{Name: "a.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.ParseIP("192.0.2.1")})
	check(&dns.CNAME{Hdr: dns.RR_Header{Name: "a.example.com.", Rrtype: dns.TypeCNAME, Class: dns.ClassCHAOS}, Target: "b."})
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		txt, owner := randomTXT(t, r, hdr, "\x07Example\x03com\x00")
		check(txt)
		check(&dns.MX{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeMX, Class: dns.ClassINET}, Mx: "Mail." + owner})
	}
	for _, typ := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeCNAME, dns.TypeDNAME, dns.TypePTR,
		dns.TypeMX, dns.TypeSRV, dns.TypeSOA, dns.TypeTXT, dns.TypeSPF} {
		if !fast[typ] {
			t.Errorf("no %s record went through appendCanonicalCommon", dns.TypeToString[typ])
		}
	}
}

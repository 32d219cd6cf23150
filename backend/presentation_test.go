package backend

import (
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fromWire is rr packed and unpacked again: what a transfer hands the backends (unpacked
// strings hold miekg/dns's escapes, which parsed ones may not).
func fromWire(t *testing.T, rr dns.RR) dns.RR {
	t.Helper()
	buf := make([]byte, dns.Len(rr)+512)
	n, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		t.Fatalf("pack %s: %v", rr, err)
	}
	back, _, err := dns.UnpackRR(buf[:n], 0)
	if err != nil {
		t.Fatalf("unpack %s: %v", rr, err)
	}
	return back
}

// checkSame fails unless AppendPresentation writes exactly what presentation (rr.String()
// based) writes, and a line appendCommon wrote parses back as the same record.
func checkSame(t *testing.T, rr dns.RR, fast map[uint16]bool) {
	t.Helper()
	if line, ok := checkBytes(t, rr, fast); ok {
		back, err := dns.NewRR(line)
		if err != nil {
			t.Errorf("%q does not parse: %v", line, err)
		} else if !dns.IsDuplicate(back, rr) || back.Header().Ttl != rr.Header().Ttl {
			t.Errorf("%q parses back as %q, not as %q", line, back, rr)
		}
	}
}

// checkBytes is the first half of checkSame; it returns the line appendCommon wrote, if it did.
func checkBytes(t *testing.T, rr dns.RR, fast map[uint16]bool) (string, bool) {
	t.Helper()
	want := presentation(rr)
	if got := string(AppendPresentation([]byte("x"), rr)); got != "x"+want {
		t.Errorf("AppendPresentation:\n got %q\nwant %q", got[1:], want)
	}
	if got := Presentation(rr); got != want {
		t.Errorf("Presentation:\n got %q\nwant %q", got, want)
	}
	line, ok := appendCommon(nil, rr)
	if ok {
		fast[rr.Header().Rrtype] = true
	}
	return string(line), ok
}

// sampleLines are records of every type appendCommon writes, with the edge cases of its
// escaping, and of types and names it leaves to rr.String().
var sampleLines = []string{
	"example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 4294967295 3600 600 86400 300",
	"Example.COM. 0 IN NS ns1.Example.net.",
	"www.example.com. 300 IN A 192.0.2.1",
	"www.example.com. 300 IN A 0.0.0.0",
	"www.example.com. 300 IN AAAA 2001:db8::1",
	"www.example.com. 300 IN AAAA ::",
	"www.example.com. 300 IN AAAA ::ffff:192.0.2.1",
	"www.example.com. 300 IN AAAA 2001:db8:0:0:1:0:0:1",
	"alias.example.com. 300 IN CNAME www.example.com.",
	"d.example.com. 300 IN DNAME example.net.",
	"1.2.0.192.in-addr.arpa. 300 IN PTR host.example.net.",
	"mx.example.com. 300 IN MX 0 .",
	"mx.example.com. 300 IN MX 65535 mail.example.net.",
	"_sip._udp.example.com. 300 IN SRV 10 20 5060 sip.example.net.",
	`txt.example.com. 300 IN TXT "one" "two with spaces" "semi;colon" "quote\"d" "back\\slash" "\255\000bin"`,
	`txt.example.com. 300 IN TXT "price $5" "a;b" "" "#hash" "(paren)"`,
	`txt.example.com. 300 IN TXT "tab\009" "\127\128" "end\\"`,
	`txt.example.com. 300 IN TXT "` + strings.Repeat("a", 255) + `" "x"`,
	`spf.example.com. 300 IN SPF "v=spf1 ip4:10.0.0.0/16 -all"`,
	// names that need escaping, and a '$': rr.String() writes them
	`a\$b.example.com. 300 IN A 192.0.2.1`,
	`\$start.example.com. 300 IN A 192.0.2.2`,
	`semi\;colon.example.com. 300 IN CNAME sp\ ace.example.com.`,
	`q\"uote.example.com. 300 IN MX 5 back\\slash.example.com.`,
	`par\(en\).example.com. 300 IN TXT "x"`,
	`at\@.example.com. 300 IN NS a\.b.example.com.`,
	`bin\200.example.com. 300 IN PTR x\000y.example.com.`,
	// other classes and types: rr.String() alone
	"version.bind. 0 CH TXT \"9.18\"",
	"www.example.com. 300 IN HINFO \"PC\" \"Linux\"",
	"www.example.com. 300 IN TYPE65000 \\# 2 0a0b",
	"rrsig.example.com. 300 IN RRSIG A 13 2 300 20300101000000 20200101000000 12345 example.com. bWRzc3dV",
}

// Every type appendCommon writes itself gives the bytes rr.String() gives (with
// Presentation's rules), and what it hands over to rr.String() is still written.
func TestAppendPresentationMatches(t *testing.T) {
	fast := map[uint16]bool{}
	for _, l := range sampleLines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		checkSame(t, rr, fast)
		checkSame(t, fromWire(t, rr), fast)
	}
	// Values a parser never builds (so they are not parsed back): an A held in 16 bytes,
	// empty TXT, a lone '\' ending a string, an escape that is not \DDD, a header of another
	// type than its Go type.
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: "h.example.com.", Rrtype: t, Class: dns.ClassINET, Ttl: 7}
	}
	for _, rr := range []dns.RR{
		&dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP("192.0.2.9")},
		&dns.A{Hdr: hdr(dns.TypeA)},
		&dns.AAAA{Hdr: hdr(dns.TypeAAAA)},
		&dns.TXT{Hdr: hdr(dns.TypeTXT)},
		&dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{`dangling\`, `\x`, `\1`, `\12`, `\123`, `\999`, `\`}},
		&dns.A{Hdr: hdr(dns.TypeAAAA), A: net.IPv4(192, 0, 2, 1)},
		&dns.MX{Hdr: hdr(dns.TypeMX), Mx: ""},
		&dns.NS{Hdr: dns.RR_Header{Name: "", Rrtype: dns.TypeNS, Class: dns.ClassINET}, Ns: "x."},
	} {
		checkBytes(t, rr, map[uint16]bool{})
	}
	// Random character-strings and owner bytes, through the wire.
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		wire, _ := randomTXT(t, r, hdr(dns.TypeTXT), "\x07example\x03com\x00")
		checkSame(t, wire, fast)
	}
	for _, typ := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeCNAME, dns.TypeDNAME, dns.TypePTR,
		dns.TypeMX, dns.TypeSRV, dns.TypeSOA, dns.TypeTXT, dns.TypeSPF} {
		if !fast[typ] {
			t.Errorf("no %s record went through appendCommon", dns.TypeToString[typ])
		}
	}
}

// randomTXT is a TXT record of random bytes, owned by a name whose first label holds
// random bytes from an alphabet of escapes, under suffix (a wire-form name), as a transfer
// would unpack it; it returns the owner too.
func randomTXT(t *testing.T, r *rand.Rand, hdr dns.RR_Header, suffix string) (dns.RR, string) {
	t.Helper()
	s := make([]byte, r.IntN(40))
	for i := range s {
		s[i] = byte(r.IntN(256))
	}
	const alphabet = "aZ9-_$;.\\\" @()*\x00\xff\t"
	label := []byte{byte(1 + r.IntN(10))}
	for range int(label[0]) {
		label = append(label, alphabet[r.IntN(len(alphabet))])
	}
	owner, _, err := dns.UnpackDomainName(append(label, suffix...), 0)
	if err != nil {
		t.Fatal(err)
	}
	txt := fromWire(t, &dns.TXT{Hdr: hdr, Txt: []string{string(s)}})
	txt.Header().Name = owner
	return txt, owner
}

package powerdns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend/backendtest"
)

func TestToRow(t *testing.T) {
	tests := []struct {
		rr   string
		want row
	}{
		{"Example.COM. 3600 IN SOA NS1.example.com. hostmaster.example.com. 7 3600 600 86400 300",
			row{Name: "example.com", Type: "SOA", Content: "NS1.example.com hostmaster.example.com 7 3600 600 86400 300", TTL: 3600}},
		{"WWW.example.com. 300 IN A 192.0.2.1", row{Name: "www.example.com", Type: "A", Content: "192.0.2.1", TTL: 300}},
		{"example.com. 300 IN MX 10 mail.example.net.", row{Name: "example.com", Type: "MX", Content: "mail.example.net", TTL: 300, Prio: 10}},
		{"example.com. 300 IN MX 0 .", row{Name: "example.com", Type: "MX", Content: ".", TTL: 300}},
		{"_sip._tcp.example.com. 60 IN SRV 5 20 5060 sip.example.com.",
			row{Name: "_sip._tcp.example.com", Type: "SRV", Content: "20 5060 sip.example.com", TTL: 60, Prio: 5}},
		{`t.example.com. 300 IN TXT "a \"b\"" "c\\d" "e f" ""`,
			row{Name: "t.example.com", Type: "TXT", Content: `"a \"b\"" "c\\d" "e f" ""`, TTL: 300}},
		{`t.example.com. 300 IN TXT "semi;colon #hash" "caf\195\169"`,
			row{Name: "t.example.com", Type: "TXT", Content: `"semi;colon #hash" "caf\195\169"`, TTL: 300}},
		{"c.example.com. 300 IN CNAME Target.Example.NET.", row{Name: "c.example.com", Type: "CNAME", Content: "Target.Example.NET", TTL: 300}},
		{"sub.example.com. 300 IN NS ns.sub.example.com.", row{Name: "sub.example.com", Type: "NS", Content: "ns.sub.example.com", TTL: 300}},
		{`c.example.com. 300 IN CAA 0 issue "letsencrypt.org"`, row{Name: "c.example.com", Type: "CAA", Content: `0 issue "letsencrypt.org"`, TTL: 300}},
		{"1.2.0.192.in-addr.arpa. 300 IN PTR host.example.com.", row{Name: "1.2.0.192.in-addr.arpa", Type: "PTR", Content: "host.example.com", TTL: 300}},
		{`n.example.com. 300 IN NAPTR 100 10 "U" "E2U+sip" "!^.*$!sip:x@example.com!" .`,
			row{Name: "n.example.com", Type: "NAPTR", Content: `100 10 "U" "E2U+sip" "!^.*$!sip:x@example.com!" .`, TTL: 300}},
		{"c.example.com. 300 IN CERT PGP 0 RSASHA256 AwEAAQ==", row{Name: "c.example.com", Type: "CERT", Content: "3 0 8 AwEAAQ==", TTL: 300}},
		{`s.example.com. 300 IN HTTPS 1 . alpn="h3,h2" port=8443 no-default-alpn ipv4hint=192.0.2.1`,
			row{Name: "s.example.com", Type: "HTTPS", Content: `1 . alpn="h3,h2" port=8443 no-default-alpn ipv4hint=192.0.2.1`, TTL: 300}},
		{"s.example.com. 300 IN SVCB 0 svc.example.net.", row{Name: "s.example.com", Type: "SVCB", Content: "0 svc.example.net", TTL: 300}},
		{"g.example.com. 300 IN IPSECKEY 10 3 2 gw.example.net. AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
			row{Name: "g.example.com", Type: "IPSECKEY", Content: "10 3 2 gw.example.net AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==", TTL: 300}},
		{`sp\032ace.example.com. 300 IN A 192.0.2.1`, row{Name: `sp\032ace.example.com`, Type: "A", Content: "192.0.2.1", TTL: 300}},
		{`dot\.ted.example.com. 300 IN A 192.0.2.1`, row{Name: `dot\.ted.example.com`, Type: "A", Content: "192.0.2.1", TTL: 300}},
	}
	for _, tt := range tests {
		rr, err := dns.NewRR(tt.rr)
		if err != nil {
			t.Fatalf("%s: %v", tt.rr, err)
		}
		got, err := toRow(rr)
		if err != nil {
			t.Errorf("toRow(%s): %v", tt.rr, err)
			continue
		}
		if got != tt.want {
			t.Errorf("toRow(%s)\n got %+v\nwant %+v", tt.rr, got, tt.want)
		}
	}
}

func TestToRowRefuses(t *testing.T) {
	tests := []struct{ rr, why string }{
		{`x.example.com. 300 IN TYPE65000 \# 1 ab`, "type TYPE65000 cannot be stored"},
		{`x.example.com. 300 CH TXT "x"`, "class IN only"},
		{"x.example.com. 300 IN HTTPS 1 . key65000=x", "SvcParam key65000"},
		{`x.example.com. 300 IN TXT "` + strings.Repeat("x", 250) + strings.Repeat(`" "`+strings.Repeat("y", 250), 260) + `"`, "longer than 64000"},
	}
	for _, tt := range tests {
		rr, err := dns.NewRR(tt.rr)
		if err != nil {
			t.Fatalf("%.60s: %v", tt.rr, err)
		}
		if _, err := toRow(rr); err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("toRow(%.60s) = %v, want an error saying %q", tt.rr, err, tt.why)
		}
	}
}

func TestNames(t *testing.T) {
	if got, ok := parent(`a\.b.example.com`); !ok || got != "example.com" {
		t.Errorf(`parent(a\.b.example.com) = %q, %v`, got, ok)
	}
	if got, ok := parent(`a\\.example.com`); !ok || got != "example.com" {
		t.Errorf(`parent(a\\.example.com) = %q, %v`, got, ok)
	}
	if _, ok := parent("com"); ok {
		t.Error("parent(com) ok")
	}
	var got []string
	between("example.com", "a.b.c.example.com", func(n string) { got = append(got, n) })
	if strings.Join(got, " ") != "b.c.example.com c.example.com" {
		t.Errorf("between = %v", got)
	}
	between("example.com", "example.com", func(n string) { t.Errorf("between(apex) called with %s", n) })
	if !isBelow("a.b.example.com", "b.example.com") || isBelow(`a\.b.example.com`, "b.example.com") || isBelow("b.example.com", "b.example.com") {
		t.Error("isBelow wrong")
	}
	if n, _ := pdnsName("."); n != "." {
		t.Errorf("root = %q", n)
	}
}

func TestCutsAuth(t *testing.T) {
	c := cuts{"sub.example.com": true, "deeper.sub.example.com": true, "other.example.com": true}
	tests := []struct {
		name, typ string
		want      bool
	}{
		{"example.com", "NS", true},
		{"www.example.com", "A", true},
		{"sub.example.com", "NS", false},
		{"sub.example.com", "DS", true},
		{"sub.example.com", "A", false},
		{"ns.sub.example.com", "A", false},
		{"deeper.sub.example.com", "DS", false}, // below the higher delegation
		{"x.ns.sub.example.com", "", false},
		{"notsub.example.com", "A", true},
	}
	for _, tt := range tests {
		if got := c.auth("example.com", tt.name, tt.typ); got != tt.want {
			t.Errorf("auth(%s %s) = %v, want %v", tt.name, tt.typ, got, tt.want)
		}
	}
}

// A small zone is spooled in memory, a large one in an unlinked file; both read back the
// same rows as often as needed.
func TestSpool(t *testing.T) {
	for _, tt := range []struct {
		records int
		inFile  bool
	}{{30, false}, {20000, true}} {
		t.Run(fmt.Sprint(tt.records), func(t *testing.T) { testSpool(t, tt.records, tt.inFile) })
	}
}

func testSpool(t *testing.T, records int, inFile bool) {
	zone := "example.com."
	rrs := backendtest.Zone(zone, 42, records)
	deleg, _ := dns.NewRR("sub.example.com. 300 IN NS ns.sub.example.com.")
	rrs = append(rrs, deleg, rrs[0]) // the closing SOA is dropped
	sp, err := spoolZone(t.Context(), zone, backendtest.Stream(backendtest.Batches(rrs, 7)...))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if sp.serial != 42 || sp.rows != len(rrs)-1 || !sp.cuts["sub.example.com"] || len(sp.cuts) != 1 {
		t.Fatalf("spool: serial %d rows %d cuts %v", sp.serial, sp.rows, sp.cuts)
	}
	if f := sp.buf.f; (f != nil) != inFile {
		t.Fatalf("%d records spooled to a file: %v, want %v", records, f != nil, inFile)
	} else if f != nil {
		// The file is unlinked: nothing to clean up after a crash.
		if _, err := os.Stat(f.Name()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("spool file %s still has a name: %v", f.Name(), err)
		}
	}
	for range 2 { // a retry reads the same rows again
		rd, err := sp.reader()
		if err != nil {
			t.Fatal(err)
		}
		for i, rr := range rrs[:len(rrs)-1] {
			want, _ := toRow(rr)
			got, err := rd.next()
			if err != nil || got != want {
				t.Fatalf("row %d: %+v, %v; want %+v", i, got, err, want)
			}
		}
		if _, err := rd.next(); err != io.EOF {
			t.Fatalf("after the last row: %v, want io.EOF", err)
		}
	}
}

func TestSpoolTruncatedRow(t *testing.T) {
	data := appendRow(nil, row{Name: "a.example.com", Type: "A", Content: "192.0.2.1", TTL: 300})
	sp := &spool{buf: spillBuffer{mem: data[:len(data)-2]}}
	rd, _ := sp.reader()
	if _, err := rd.next(); err == nil || err == io.EOF {
		t.Fatalf("truncated row read as %v", err)
	}
}

func TestSpoolRefuses(t *testing.T) {
	zone := "example.com."
	good := backendtest.Zone(zone, 1, 3)
	otherSOA := backendtest.Zone(zone, 2, 0)[0]
	unknown, _ := dns.NewRR(`x.example.com. 300 IN TYPE65000 \# 1 ab`)
	tests := []struct {
		name string
		rrs  []dns.RR
		why  string
	}{
		{"no SOA first", good[1:], "does not start with the SOA"},
		{"empty", nil, "empty stream"},
		{"second SOA", append(append([]dns.RR{}, good...), otherSOA), "second, different SOA"},
		{"refused type", append(append([]dns.RR{}, good...), unknown), "TYPE65000 cannot be stored"},
	}
	for _, tt := range tests {
		_, err := spoolZone(t.Context(), zone, backendtest.Stream(tt.rrs))
		if err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.why)
		}
	}
	broken := errors.New("connection reset")
	if _, err := spoolZone(t.Context(), zone, backendtest.FailingStream(broken, good)); !errors.Is(err, broken) {
		t.Errorf("failing source: %v", err)
	}
}

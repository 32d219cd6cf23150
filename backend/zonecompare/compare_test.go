package zonecompare

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func parse(t *testing.T, text string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	zp := dns.NewZoneParser(strings.NewReader(text), "example.com.", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return rrs
}

type slice struct{ rrs []dns.RR }

func (s *slice) Next() ([]dns.RR, error) {
	if s.rrs == nil {
		return nil, io.EOF
	}
	b := s.rrs
	s.rrs = nil
	return b, nil
}

func reader(rrs []dns.RR) ReadFunc {
	return func(_ context.Context, each func([]dns.RR) error) error { return each(rrs) }
}

const base = `@ 3600 IN SOA ns1 hostmaster 7 3600 600 86400 300
@ 3600 IN NS ns1
ns1 300 IN A 192.0.2.1
`

func TestCompare(t *testing.T) {
	held := parse(t, base+`
www 300 IN A 192.0.2.10
www 300 IN A 192.0.2.11
mail 300 IN MX 10 mx1
old 300 IN TXT "gone"
ttl 300 IN A 192.0.2.20
`)
	primary := parse(t, base+`
WWW 300 IN A 192.0.2.10
www 300 IN A 192.0.2.12
mail 300 IN MX 10 mx1
mail 300 IN MX 10 mx1
new 300 IN AAAA 2001:db8::1
new 300 IN TXT "hello world"
ttl 600 IN A 192.0.2.20
`)
	res, err := Compare(context.Background(), "example.com.", reader(held), &slice{primary}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.Print(&out)
	want := `+ new.example.com. TXT
    + new.example.com.	300	IN	TXT	"hello world"
+ new.example.com. AAAA
    + new.example.com.	300	IN	AAAA	2001:db8::1
- old.example.com. TXT
    - old.example.com.	300	IN	TXT	"gone"
~ ttl.example.com. A
    - ttl.example.com.	300	IN	A	192.0.2.20
    + ttl.example.com.	600	IN	A	192.0.2.20
~ www.example.com. A
    - www.example.com.	300	IN	A	192.0.2.11
    + www.example.com.	300	IN	A	192.0.2.12
2 to add, 1 to delete, 2 to change
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if res.Equal {
		t.Error("Equal")
	}
	cs := res.ChangeSet()
	if d, a := cs.Size(); d != 3 || a != 4 {
		t.Errorf("change set: %d deleted, %d added; want 3 and 4", d, a)
	}

	same, err := Compare(context.Background(), "example.com.", reader(held), &slice{held}, 0)
	if err != nil || !same.Equal || same.Summary() != "no difference (8 records, serial 7)" {
		t.Errorf("equal zones: %+v, %v", same, err)
	}
}

func TestCompareKeepsAtMostMaxDetail(t *testing.T) {
	held := parse(t, base)
	primary := parse(t, base+"a 1 IN A 192.0.2.1\nb 1 IN A 192.0.2.2\nc 1 IN A 192.0.2.3\n")
	res, err := Compare(context.Background(), "example.com.", reader(held), &slice{primary}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Add != 3 || res.Truncated != 1 || res.ChangeSet() != nil {
		t.Errorf("add %d, truncated %d, change set %v", res.Add, res.Truncated, res.ChangeSet())
	}
}

package backend

import (
	"bytes"
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

package backend

import (
	"testing"

	"github.com/miekg/dns"
)

// InZone answers as dns.IsSubDomain, escapes and case included.
func TestInZone(t *testing.T) {
	for _, zone := range []string{"example.com.", "Example.COM.", ".", `ex\.ample.com.`, `a\\.com.`, "com."} {
		for _, name := range []string{
			"example.com.", "EXAMPLE.com.", "www.example.com.", "a.b.Example.Com.", "wwwexample.com.",
			`www\.example.com.`, `www\\.example.com.`, `www\\\.example.com.`, `a\046example.com.`, "com.", ".",
			`x.ex\.ample.com.`, `ex\.ample.com.`, `b.a\\.com.`, `a\\.com.`, `\\.com.`, "example.com.org.", "",
		} {
			if got, want := InZone(zone, name), dns.IsSubDomain(zone, name); got != want {
				t.Errorf("InZone(%q, %q) = %v, dns.IsSubDomain says %v", zone, name, got, want)
			}
		}
	}
}

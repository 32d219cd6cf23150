package backend

import (
	"strings"
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

// appendLowerASCII lowercases as strings.ToLower does ASCII, every byte value at every
// position of a word, and refuses bytes over 0x7f.
func TestAppendLowerASCII(t *testing.T) {
	for c := range 256 {
		for pos := range 11 {
			src := []byte("xYz-0123.Ab")
			src[pos] = byte(c)
			got, ascii := appendLowerASCII([]byte("p"), src)
			if want := c < 0x80; ascii != want {
				t.Fatalf("byte %#x at %d: ascii %v", c, pos, ascii)
			}
			if ascii && string(got) != "p"+strings.ToLower(string(src)) {
				t.Fatalf("byte %#x at %d: %q, want %q", c, pos, got[1:], strings.ToLower(string(src)))
			}
		}
	}
}

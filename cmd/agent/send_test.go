package main

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// --tsig takes dig -y's [ALG:]NAME:SECRET; the key name is canonical, as the agent's
// configuration makes it, and an algorithm the agent does not know is refused up front.
func TestParseTSIG(t *testing.T) {
	for _, tt := range []struct {
		spec, name, alg, err string
	}{
		{spec: "Designate:c2VjcmV0", name: "designate.", alg: dns.HmacSHA256},
		{spec: "HMAC-SHA512:designate.:c2VjcmV0", name: "designate.", alg: dns.HmacSHA512},
		{spec: "hmac-md5:designate:c2VjcmV0", err: `unknown algorithm "hmac-md5"`},
		{spec: "designate", err: "want [ALG:]NAME:SECRET"},
	} {
		name, alg, secret, err := parseTSIG(tt.spec)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseTSIG(%q): %v, want an error saying %q", tt.spec, err, tt.err)
			}
			continue
		}
		if err != nil || name != tt.name || alg != tt.alg || secret != "c2VjcmV0" {
			t.Errorf("parseTSIG(%q) = %q, %q, %q, %v; want %q, %q", tt.spec, name, alg, secret, err, tt.name, tt.alg)
		}
	}
}

// The message is what Designate's worker sends, with the zone name canonical.
func TestDesignateMessage(t *testing.T) {
	msg, err := designateMessage("create", "Example.COM")
	if err != nil {
		t.Fatal(err)
	}
	if q := msg.Question[0]; q.Name != "example.com." || msg.Opcode != 14 || !msg.Authoritative {
		t.Errorf("CREATE message %v, want opcode 14 with AA for example.com.", msg)
	}
}

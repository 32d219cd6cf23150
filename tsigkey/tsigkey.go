// Package tsigkey owns the shared secrets of RFC 8945 transaction signatures: the keys the
// configuration defines in [tsig:NAME] sections and the transfer engine, the backends and
// the request chain sign and verify with. It imports nothing of the agent's, so none of
// them needs to know how the configuration is read.
package tsigkey

import (
	"encoding/base64"
	"strings"

	"github.com/miekg/dns"
)

// Key is one shared secret.
type Key struct {
	Name      string // key name, fully qualified ("designate.")
	Algorithm string // miekg/dns algorithm name, e.g. dns.HmacSHA256
	Secret    string // base64, as dns.Client.TsigSecret wants it
}

// algorithms maps the names operators write (BIND's) to miekg/dns's.
var algorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha512": dns.HmacSHA512,
}

// CanonicalName returns the form key names take: lowercase, fully qualified. RFC 8945
// §4.2 compares key names as domain names, case-insensitively.
func CanonicalName(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// Algorithm returns miekg/dns's name of the algorithm BIND calls name, or "" for one the
// agent does not support.
func Algorithm(name string) string { return algorithms[strings.ToLower(name)] }

// ValidSecret tells whether secret is a non-empty base64 string.
func ValidSecret(secret string) bool {
	_, err := base64.StdEncoding.DecodeString(secret)
	return err == nil && secret != ""
}

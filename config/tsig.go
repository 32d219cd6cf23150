package config

import (
	"encoding/base64"
	"strings"

	"github.com/miekg/dns"
)

// TSIGKey is a `[tsig:NAME]` section: a shared secret for RFC 8945 transaction signatures.
type TSIGKey struct {
	Name      string // key name, fully qualified ("designate.")
	Algorithm string // miekg/dns algorithm name, e.g. dns.HmacSHA256
	Secret    string // base64, as dns.Client.TsigSecret wants it
}

// tsigAlgorithms maps the names operators write (BIND's) to miekg/dns's.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha512": dns.HmacSHA512,
}

// TSIGKey reads option key, the name of a key, and returns the `[tsig:NAME]` section it
// names, or nil when the option is empty or the key is broken (the problem is recorded).
func (s *Section) TSIGKey(key string) *TSIGKey {
	keys := s.TSIGKeys(key)
	if len(keys) > 1 {
		s.Errorf(key, "names %d keys; give one", len(keys))
	}
	if len(keys) == 0 {
		return nil
	}
	return keys[0]
}

// TSIGKeys reads option key, a comma-separated list of key names, and returns the keys.
func (s *Section) TSIGKeys(key string) []*TSIGKey {
	var keys []*TSIGKey
	for _, name := range s.List(key) {
		if !s.file.ini.HasSection("tsig:" + name) {
			s.Errorf(key, "no [tsig:%s] section defines the key %q", name, name)
			continue
		}
		if k := s.file.tsigKey(name); k != nil {
			keys = append(keys, k)
		}
	}
	return keys
}

// tsigKey reads the `[tsig:NAME]` section; nil (with the problem recorded) if it is broken.
func (f *File) tsigKey(name string) *TSIGKey {
	ks := f.Section("tsig:" + name)
	algorithm := strings.ToLower(ks.String("algorithm", "hmac-sha256"))
	k := &TSIGKey{Name: dns.Fqdn(strings.ToLower(name)), Algorithm: tsigAlgorithms[algorithm], Secret: ks.String("secret", "")}
	if k.Algorithm == "" {
		ks.Errorf("algorithm", "%q: use hmac-sha256, hmac-sha512 or hmac-sha1", algorithm)
		return nil
	}
	if _, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || k.Secret == "" {
		ks.Errorf("secret", "missing or not base64")
		return nil
	}
	return k
}

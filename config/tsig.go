package config

import (
	"strings"

	"github.com/dnsagent/dnsagent/tsigkey"
)

// TSIGKey reads option key, the name of a key, and returns the `[tsig:NAME]` section it
// names, or nil when the option is empty or the key is broken (the problem is recorded).
func (s *Section) TSIGKey(key string) *tsigkey.Key {
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
func (s *Section) TSIGKeys(key string) []*tsigkey.Key {
	var keys []*tsigkey.Key
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
// A section named by several options is read once and its problems reported once.
func (f *File) tsigKey(name string) *tsigkey.Key {
	_, seen := f.sections["tsig:"+name]
	ks := f.Section("tsig:" + name)
	algorithm := strings.ToLower(ks.String("algorithm", "hmac-sha256"))
	k := &tsigkey.Key{Name: tsigkey.CanonicalName(name), Algorithm: tsigkey.Algorithm(algorithm), Secret: ks.String("secret", "")}
	if k.Algorithm == "" {
		if !seen {
			ks.Errorf("algorithm", "%q: use hmac-sha256, hmac-sha512 or hmac-sha1", algorithm)
		}
		return nil
	}
	if !tsigkey.ValidSecret(k.Secret) {
		if !seen {
			ks.Errorf("secret", "missing or not base64")
		}
		return nil
	}
	return k
}

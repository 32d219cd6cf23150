package tsigkey

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"

	"github.com/miekg/dns"
)

// hashes are the hash functions of the algorithms the agent accepts.
var hashes = map[string]func() hash.Hash{
	dns.HmacSHA1:   sha1.New,
	dns.HmacSHA256: sha256.New,
	dns.HmacSHA512: sha512.New,
}

// Hash returns the hash function of algorithm (miekg/dns's name, any case).
func Hash(algorithm string) (func() hash.Hash, bool) {
	h, ok := hashes[strings.ToLower(dns.Fqdn(algorithm))]
	return h, ok
}

// Provider is a dns.TsigProvider over a set of keys that finds a key by its name in any
// case, as RFC 8945 §4.2 wants: miekg/dns's TsigSecret map matches names exactly, so a
// client signing with "Designate." would get BADKEY for the key "designate.". A key used
// with an algorithm other than its own is not found (BADKEY, as BIND answers).
type Provider map[string]*Key

// NewProvider returns the provider of keys.
func NewProvider(keys []*Key) Provider {
	p := Provider{}
	for _, k := range keys {
		p[CanonicalName(k.Name)] = k
	}
	return p
}

// Generate returns the MAC of msg with the key t names.
func (p Provider) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	k, ok := p[CanonicalName(t.Hdr.Name)]
	if !ok || !strings.EqualFold(dns.Fqdn(t.Algorithm), dns.Fqdn(k.Algorithm)) {
		return nil, dns.ErrSecret
	}
	newHash, ok := Hash(k.Algorithm)
	if !ok {
		return nil, dns.ErrKeyAlg
	}
	secret, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil {
		return nil, err
	}
	h := hmac.New(newHash, secret)
	h.Write(msg)
	return h.Sum(nil), nil
}

// Verify checks t's MAC over msg.
func (p Provider) Verify(msg []byte, t *dns.TSIG) error {
	want, err := p.Generate(msg, t)
	if err != nil {
		return err
	}
	mac, err := hex.DecodeString(t.MAC)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, mac) {
		return dns.ErrSig
	}
	return nil
}

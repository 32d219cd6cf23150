package transfer

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
)

// maxUnsigned is how many unsigned messages may follow a signed one in a transfer: RFC 8945
// §5.3.1 lets a primary sign only every hundredth message.
const maxUnsigned = 99

// tsigChain verifies the TSIGs of the messages answering one signed request (RFC 8945
// §5.3.1). A signed message's MAC covers the previous MAC (the request's for the first
// reply), the unsigned messages received since, the message itself, and either all the TSIG
// variables (first reply) or only the timers (later ones). miekg/dns's TsigVerify cannot
// cover unsigned messages, so the digest up to the message is kept here, and TsigVerify
// adds the message and the timers through a provider (it also strips the TSIG, restores the
// original ID and checks the time against the fudge).
type tsigChain struct {
	key      *tsigkey.Key
	next     hash.Hash // fed with what precedes the next signed message
	replies  int       // replies seen
	unsigned int       // unsigned replies since the last signed one
}

func newTSIGChain(key *tsigkey.Key, requestMAC string) (*tsigChain, error) {
	c := &tsigChain{key: key}
	return c, c.restart(requestMAC)
}

// restart begins the digest for the message following one signed with mac (hex).
func (c *tsigChain) restart(mac string) error {
	newHash, ok := tsigkey.Hash(c.key.Algorithm)
	if !ok {
		return fmt.Errorf("TSIG key %s: unsupported algorithm %s", c.key.Name, c.key.Algorithm)
	}
	secret, err := base64.StdEncoding.DecodeString(c.key.Secret)
	if err != nil {
		return fmt.Errorf("TSIG key %s: secret: %w", c.key.Name, err)
	}
	raw, err := hex.DecodeString(mac)
	if err != nil {
		return err
	}
	c.next = hmac.New(newHash, secret)
	c.next.Write(binary.BigEndian.AppendUint16(nil, uint16(len(raw))))
	c.next.Write(raw)
	c.unsigned = 0
	return nil
}

// verify checks one reply: msg is wire, unpacked. wire is modified.
func (c *tsigChain) verify(wire []byte, msg *dns.Msg) error {
	first := c.replies == 0
	c.replies++
	ts := msg.IsTsig()
	switch {
	case ts == nil && first:
		return fmt.Errorf("unsigned reply, but TSIG key %s is configured (rcode %s)", c.key.Name, dns.RcodeToString[msg.Rcode])
	case ts == nil:
		if c.unsigned == maxUnsigned {
			return fmt.Errorf("more than %d unsigned messages in a row with TSIG key %s (RFC 8945 §5.3.1)", maxUnsigned, c.key.Name)
		}
		c.unsigned++
		c.next.Write(wire)
		return nil
	case ts.Error != dns.RcodeSuccess:
		return fmt.Errorf("primary rejected TSIG key %s: %s", c.key.Name, dns.RcodeToString[int(ts.Error)])
	case !strings.EqualFold(ts.Hdr.Name, c.key.Name) || !strings.EqualFold(ts.Algorithm, c.key.Algorithm):
		return fmt.Errorf("reply signed with key %s (%s), want TSIG key %s (%s)", ts.Hdr.Name, ts.Algorithm, c.key.Name, c.key.Algorithm)
	}
	if err := dns.TsigVerifyWithProvider(wire, macChain{c.next}, "", !first); err != nil {
		if c.unsigned > 0 {
			return fmt.Errorf("reply signature (covering the %d unsigned messages before it) does not verify with TSIG key %s: %w", c.unsigned, c.key.Name, err)
		}
		return fmt.Errorf("reply signature does not verify with TSIG key %s: %w", c.key.Name, err)
	}
	return c.restart(ts.MAC)
}

// complete says whether the messages so far may end the answer: RFC 8945 §5.3.1 requires
// the last one signed, or unsigned messages at the end could be forged.
func (c *tsigChain) complete() error {
	if c.unsigned > 0 {
		return fmt.Errorf("the last %d messages are unsigned (TSIG key %s): the last message must be signed (RFC 8945 §5.3.1)", c.unsigned, c.key.Name)
	}
	return nil
}

// macChain is a dns.TsigProvider that verifies a MAC against a digest already fed with
// what precedes the message.
type macChain struct{ h hash.Hash }

func (m macChain) Generate([]byte, *dns.TSIG) ([]byte, error) {
	return nil, errors.New("macChain only verifies")
}

func (m macChain) Verify(msg []byte, t *dns.TSIG) error {
	mac, err := hex.DecodeString(t.MAC)
	if err != nil {
		return err
	}
	m.h.Write(msg)
	if !hmac.Equal(m.h.Sum(nil), mac) {
		return dns.ErrSig
	}
	return nil
}

package bind9

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/internal/run"
)

// Channel speaks named's control channel protocol itself (the one rndc speaks: ISC's
// "command channel" messages, lib/isccc in BIND 9), one TCP connection per command. An
// rndc process costs about 8 ms of CPU to start, load its libraries and read its
// configuration — four times what named spends adding a zone — so with many zones
// created at once the rndc processes, not named, were the limit.
//
// A message is a 4-byte length, a 4-byte version (1) and a table: entries of a 1-byte key
// length, the key, a 1-byte value type (1 binary, 2 table), a 4-byte length and the
// value. The first entry, _auth, carries the HMAC (keyed with the rndc key) of every
// byte after it; _ctrl carries a serial, the time, an expiry and, after the first
// exchange, the connection's nonce; _data carries the command ("type") and, in named's
// reply, "result" (0 is success), "err" and "text".
type Channel struct {
	Addr    string
	Key     ChannelKey
	Timeout time.Duration
	// KeyFile, when set, is read again whenever it changes, as rndc reads it on every
	// run: a key fixed or rotated on disk is used without restarting the agent.
	KeyFile string

	mu      sync.Mutex
	keyTime time.Time // KeyFile's modification time when Key was read
}

// key returns the key to sign with, reading KeyFile again if it changed; a file that
// cannot be read keeps the key read before.
func (c *Channel) key() ChannelKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.KeyFile == "" {
		return c.Key
	}
	if info, err := os.Stat(c.KeyFile); err == nil && !info.ModTime().Equal(c.keyTime) {
		if k, err := ReadKeyFile(c.KeyFile); err == nil {
			c.Key, c.keyTime = k, info.ModTime()
		}
	}
	return c.Key
}

// ccSerial numbers the messages (_ser). named drops a message whose serial and time it
// has seen already (replay protection, isccc_cc_checkdup), so a restarted agent must not
// count from 1 again within the same second: it starts at a random value, as rndc does.
var ccSerial atomic.Uint32

func init() { ccSerial.Store(rand.Uint32()) }

// ChannelKey is the rndc key: its algorithm and secret.
type ChannelKey struct {
	Algorithm string // hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512
	Secret    []byte
}

// Algorithm codes of the _auth entry's hsha value (lib/isccc/include/isccc/cc.h).
var channelAlgs = map[string]struct {
	code byte
	new  func() hash.Hash
}{
	"hmac-md5":    {157, md5.New},
	"hmac-sha1":   {161, sha1.New},
	"hmac-sha224": {162, sha256.New224},
	"hmac-sha256": {163, sha256.New},
	"hmac-sha384": {164, sha512.New384},
	"hmac-sha512": {165, sha512.New},
}

const (
	ccBinary = 1
	ccTable  = 2
	// hmd5 holds the base64 digest without its padding (22 bytes); hsha holds the
	// algorithm code and the padded base64 digest, zero-filled to 88 bytes.
	hmd5Len = 22
	hshaLen = 88
)

var keyStatement = regexp.MustCompile(`(?s)key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;`)

// confComment matches a quoted string or a comment of named.conf's syntax.
var confComment = regexp.MustCompile(`(?s)"[^"]*"|/\*.*?\*/|//[^\n]*|#[^\n]*`)
var keyField = regexp.MustCompile(`(?s)\b(algorithm|secret)\s+"?([^";\s]+)"?\s*;`)

// ReadKeyFile reads the first key statement of an rndc key file (rndc-confgen -a's
// format: key "NAME" { algorithm ALG; secret "BASE64"; };).
func ReadKeyFile(path string) (ChannelKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ChannelKey{}, err
	}
	// Comments (#, //, /* */) never hold a key here; drop them so they cannot confuse.
	// Quoted strings are kept whole: a base64 secret may hold "//".
	text := confComment.ReplaceAllStringFunc(string(data), func(s string) string {
		if strings.HasPrefix(s, `"`) {
			return s
		}
		return ""
	})
	m := keyStatement.FindStringSubmatch(text)
	if m == nil {
		return ChannelKey{}, fmt.Errorf("%s: no key statement", path)
	}
	var k ChannelKey
	for _, f := range keyField.FindAllStringSubmatch(m[2], -1) {
		switch f[1] {
		case "algorithm":
			k.Algorithm = strings.ToLower(f[2])
		case "secret":
			if k.Secret, err = base64.StdEncoding.DecodeString(f[2]); err != nil {
				return ChannelKey{}, fmt.Errorf("%s: key %s: secret: %v", path, m[1], err)
			}
		}
	}
	if _, ok := channelAlgs[k.Algorithm]; !ok {
		return ChannelKey{}, fmt.Errorf("%s: key %s: algorithm %q is not one rndc uses", path, m[1], k.Algorithm)
	}
	if len(k.Secret) == 0 {
		return ChannelKey{}, fmt.Errorf("%s: key %s: no secret", path, m[1])
	}
	return k, nil
}

// Run implements RNDC: the arguments are joined by spaces into one command, as rndc
// does, and named's text (or error) is returned.
func (c *Channel) Run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	text, err := c.run(ctx, strings.Join(args, " "))
	text = run.Clip(text)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer within rndc_timeout %s: %w", c.Timeout, err)
		}
		return text, &RNDCError{Args: args, Output: text, Err: err}
	}
	return text, nil
}

func (c *Channel) run(ctx context.Context, command string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// named answers a first message with a nonce that every later one must carry.
	reply, err := c.exchange(conn, "null", "")
	if err != nil {
		return "", err
	}
	nonce := reply.ctrl["_nonce"]
	if nonce == "" {
		return "", errors.New("control channel: no nonce in named's reply")
	}
	reply, err = c.exchange(conn, command, nonce)
	if err != nil {
		return "", err
	}
	text := reply.data["text"]
	if e := reply.data["err"]; e != "" {
		if text != "" {
			text = e + ": " + text
		} else {
			text = e
		}
	}
	if r := reply.data["result"]; r != "" && r != "0" {
		return text, fmt.Errorf("named answered result %s", r)
	}
	return text, nil
}

type ccReply struct{ ctrl, data map[string]string }

func (c *Channel) exchange(conn net.Conn, command, nonce string) (ccReply, error) {
	now := time.Now().Unix()
	var ctrl bytes.Buffer
	putBinary(&ctrl, "_ser", strconv.FormatUint(uint64(ccSerial.Add(1)), 10))
	putBinary(&ctrl, "_tim", strconv.FormatInt(now, 10))
	putBinary(&ctrl, "_exp", strconv.FormatInt(now+60, 10))
	if nonce != "" {
		putBinary(&ctrl, "_nonce", nonce)
	}
	var data bytes.Buffer
	putBinary(&data, "type", command)
	var body bytes.Buffer
	putEntry(&body, "_ctrl", ccTable, ctrl.Bytes())
	putEntry(&body, "_data", ccTable, data.Bytes())

	var msg bytes.Buffer
	msg.Write([]byte{0, 0, 0, 0, 0, 0, 0, 1}) // length (below), version 1
	putEntry(&msg, "_auth", ccTable, c.auth(body.Bytes()))
	msg.Write(body.Bytes())
	b := msg.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := conn.Write(b); err != nil {
		return ccReply{}, err
	}

	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); errors.Is(err, io.EOF) {
		// named closes without a word on a bad signature or a source its controls refuse.
		return ccReply{}, errors.New("named closed the control channel connection: a wrong key (rndc_key_file), or a source address named's controls do not allow?")
	} else if err != nil {
		return ccReply{}, fmt.Errorf("control channel: reading named's reply: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 4 || n > 16<<20 {
		return ccReply{}, fmt.Errorf("control channel: reply of %d bytes", n)
	}
	in := make([]byte, n)
	if _, err := io.ReadFull(conn, in); err != nil {
		return ccReply{}, fmt.Errorf("control channel: reading named's reply: %w", err)
	}
	if v := binary.BigEndian.Uint32(in); v != 1 {
		return ccReply{}, fmt.Errorf("control channel: reply version %d", v)
	}
	return c.parseReply(in[4:])
}

// auth builds the _auth table signing body.
func (c *Channel) auth(body []byte) []byte {
	key := c.key()
	alg := channelAlgs[key.Algorithm]
	mac := hmac.New(alg.new, key.Secret)
	mac.Write(body)
	digest := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	var t bytes.Buffer
	if key.Algorithm == "hmac-md5" {
		putEntry(&t, "hmd5", ccBinary, []byte(digest[:hmd5Len]))
	} else {
		v := make([]byte, 1+hshaLen)
		v[0] = alg.code
		copy(v[1:], digest)
		putEntry(&t, "hsha", ccBinary, v)
	}
	return t.Bytes()
}

// parseReply reads a reply's table, checks its signature and returns _ctrl and _data.
func (c *Channel) parseReply(b []byte) (ccReply, error) {
	r := ccReply{ctrl: map[string]string{}, data: map[string]string{}}
	var authValue []byte
	first := true
	for len(b) > 0 {
		key, typ, value, rest, err := nextEntry(b)
		if err != nil {
			return r, err
		}
		switch {
		case key == "_auth" && first && typ == ccTable:
			authValue = value
			if string(c.auth(rest)) != string(authValue) {
				return r, errors.New("control channel: named's reply is not signed with our key")
			}
		case key == "_ctrl" && typ == ccTable:
			if err := readTable(value, r.ctrl); err != nil {
				return r, err
			}
		case key == "_data" && typ == ccTable:
			if err := readTable(value, r.data); err != nil {
				return r, err
			}
		}
		first = false
		b = rest
	}
	if authValue == nil {
		return r, errors.New("control channel: named's reply is not signed")
	}
	return r, nil
}

func readTable(b []byte, into map[string]string) error {
	for len(b) > 0 {
		key, typ, value, rest, err := nextEntry(b)
		if err != nil {
			return err
		}
		if typ == ccBinary {
			into[key] = strings.TrimRight(string(value), "\x00")
		}
		b = rest
	}
	return nil
}

func nextEntry(b []byte) (key string, typ byte, value, rest []byte, err error) {
	if len(b) < 1 || len(b) < 1+int(b[0])+5 {
		return "", 0, nil, nil, errors.New("control channel: truncated reply")
	}
	k := int(b[0])
	key, typ = string(b[1:1+k]), b[1+k]
	n := binary.BigEndian.Uint32(b[2+k:])
	b = b[6+k:]
	if uint64(n) > uint64(len(b)) {
		return "", 0, nil, nil, errors.New("control channel: truncated reply")
	}
	return key, typ, b[:n], b[n:], nil
}

func putEntry(w *bytes.Buffer, key string, typ byte, value []byte) {
	w.WriteByte(byte(len(key)))
	w.WriteString(key)
	w.WriteByte(typ)
	binary.Write(w, binary.BigEndian, uint32(len(value)))
	w.Write(value)
}

func putBinary(w *bytes.Buffer, key, value string) { putEntry(w, key, ccBinary, []byte(value)) }

package harness

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

// DefaultTimeout bounds every exchange of the helpers below unless told otherwise.
const DefaultTimeout = 3 * time.Second

// ErrNoReply is returned when a server stayed silent until the deadline.
var ErrNoReply = errors.New("no reply before the deadline")

// Question encodes a DNS question section entry: name in wire format, type, class.
func Question(name string, qtype, qclass uint16) []byte {
	b := packName(name)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, qtype), qclass)
}

// packName encodes name as uncompressed wire-format labels.
func packName(name string) []byte {
	name = strings.TrimSuffix(name, ".")
	var b []byte
	if name != "" {
		for _, l := range strings.Split(name, ".") {
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	return append(b, 0)
}

// Header encodes a 12-byte DNS header.
func Header(id, flags, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	for i, v := range []uint16{id, flags, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// RawMessage is a header followed by the given questions (no other sections).
func RawMessage(id, flags uint16, questions ...[]byte) []byte {
	b := Header(id, flags, uint16(len(questions)), 0, 0, 0)
	for _, q := range questions {
		b = append(b, q...)
	}
	return b
}

// CreateMsg is Designate's CREATE for zone: `zone. CLASS65280 TYPE65282`, flags 0x7400,
// no EDNS.
func CreateMsg(id uint16, zone string) []byte {
	return RawMessage(id, request.FlagsCC, Question(zone, request.TypeCreate, request.ClassCC))
}

// DeleteMsg is Designate's DELETE for zone (TYPE65283).
func DeleteMsg(id uint16, zone string) []byte {
	return RawMessage(id, request.FlagsCC, Question(zone, request.TypeDelete, request.ClassCC))
}

// NotifyMsg is a NOTIFY for zone (question zone SOA IN) with flags 0x2100 when rd (what
// Designate's worker sends) or 0x2000.
func NotifyMsg(id uint16, zone string, rd bool) []byte {
	flags := uint16(request.FlagsNotify)
	if rd {
		flags = request.FlagsNotifyRD
	}
	return RawMessage(id, flags, Question(zone, dns.TypeSOA, dns.ClassINET))
}

// QueryMsg is a plain query (opcode 0, no EDNS) with RD as given.
func QueryMsg(id uint16, name string, qtype uint16, rd bool) []byte {
	flags := uint16(0)
	if rd {
		flags = 0x0100
	}
	return RawMessage(id, flags, Question(name, qtype, dns.ClassINET))
}

// Reply is a request's expected reply: the same id and question, with the given flags and
// no records (how the agent answers commands and NOTIFY).
func Reply(req []byte, flags uint16) []byte {
	r := append([]byte(nil), req...)
	binary.BigEndian.PutUint16(r[2:], flags)
	return r
}

// Flags returns the flags word of a message (0 if it is shorter than a header).
func Flags(msg []byte) uint16 {
	if len(msg) < 4 {
		return 0
	}
	return binary.BigEndian.Uint16(msg[2:])
}

// ID returns the id of a message.
func ID(msg []byte) uint16 {
	if len(msg) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(msg)
}

// Hex decodes hex, ignoring spaces; it panics on bad input (test vectors are constants).
func Hex(s string) []byte {
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		panic(fmt.Sprintf("Hex(%q): %v", s, err))
	}
	return b
}

// HexString encodes b as lower-case hex.
func HexString(b []byte) string { return hex.EncodeToString(b) }

// ExchangeUDP sends req in one datagram to addr and returns the first datagram received
// before timeout that carries req's id (ErrNoReply if none). Another datagram is skipped,
// as a resolver skips it (RFC 5452 §9.1): the kernel may give this socket the port of
// one closed a moment ago, whose late reply then arrives here. A reply with a wrong id
// therefore shows as no reply.
func ExchangeUDP(addr string, req []byte, timeout time.Duration) ([]byte, error) {
	return ExchangeUDPFrom("", addr, req, timeout)
}

// ExchangeUDPFrom is ExchangeUDP from the local IP src ("" = any; any 127.0.0.0/8
// address works on Linux loopback, which lets tests play a refused source).
func ExchangeUDPFrom(src, addr string, req []byte, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, ErrNoReply
			}
			return nil, err
		}
		if len(req) < 2 || (n >= 2 && buf[0] == req[0] && buf[1] == req[1]) {
			return buf[:n], nil
		}
	}
}

// SendUDP sends one datagram and does not wait for anything.
func SendUDP(addr string, b []byte) error {
	c, err := net.DialTimeout("udp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	_, err = c.Write(b)
	return err
}

// ExchangeTCP sends req with its two-byte length prefix and reads one length-prefixed
// reply before timeout.
func ExchangeTCP(addr string, req []byte, timeout time.Duration) ([]byte, error) {
	return ExchangeTCPFrom("", addr, req, timeout)
}

// ExchangeTCPFrom is ExchangeTCP from the local IP src.
func ExchangeTCPFrom(src, addr string, req []byte, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	out := binary.BigEndian.AppendUint16(nil, uint16(len(req)))
	if _, err := c.Write(append(out, req...)); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, ErrNoReply
		}
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// SendTCPRaw connects, writes b as it is (no length prefix added), half-closes unless
// keepOpen, and returns whatever the server sent before it closed or timeout passed.
func SendTCPRaw(addr string, b []byte, keepOpen bool, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if len(b) > 0 {
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
	}
	if !keepOpen {
		c.(*net.TCPConn).CloseWrite()
	}
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = nil
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return got, err
}

// Exchange sends a miekg message over UDP or TCP ("udp"/"tcp") and unpacks the reply.
func Exchange(network, addr string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	req, err := m.Pack()
	if err != nil {
		return nil, err
	}
	var raw []byte
	if network == "tcp" {
		raw, err = ExchangeTCP(addr, req, timeout)
	} else {
		raw, err = ExchangeUDP(addr, req, timeout)
	}
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		return nil, fmt.Errorf("unpack reply %x: %w", raw, err)
	}
	return r, nil
}

// DescribeReply renders a raw reply for failure messages: hex, and the parsed message if
// it parses.
func DescribeReply(raw []byte) string {
	if raw == nil {
		return "<no reply>"
	}
	s := HexString(raw)
	m := new(dns.Msg)
	if err := m.Unpack(raw); err == nil {
		s += "\n" + m.String()
	}
	return s
}

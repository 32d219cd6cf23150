package backend

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// AppendCanonical appends rr's comparison form to buf: its uncompressed wire format with
// the owner name lowercased (owner names compare case-insensitively, RFC 4343; names in
// the data are kept as they are), TTL included, so a TTL change is a change. It returns
// the extended buffer and the length, within what it appended, of the owner name. Two
// records are the same RR when their forms are equal (RFC 2181 §5). Packing sets rr's
// Rdlength: call it where nobody else reads rr at the same time.
func AppendCanonical(buf []byte, rr dns.RR) ([]byte, int, error) {
	if out, owner, ok := appendCanonicalCommon(buf, rr); ok {
		return out, owner, nil
	}
	return appendCanonicalPacked(buf, rr)
}

// appendCanonicalPacked is AppendCanonical through dns.PackRR, for every type.
func appendCanonicalPacked(buf []byte, rr dns.RR) ([]byte, int, error) {
	start := len(buf)
	if need := start + dns.Len(rr) + 64; cap(buf) < need {
		buf = append(make([]byte, 0, max(need, 2*cap(buf))), buf...)
	}
	full := buf[:cap(buf)]
	n, err := dns.PackRR(rr, full, start, nil, false)
	if err != nil {
		return buf, 0, fmt.Errorf("record %s: %w", rr.Header().Name, err)
	}
	wire := full[start:n]
	// Label lengths (at most 63) never fall in 'A'..'Z': only label bytes change.
	i := 0
	for i < len(wire) && wire[i] != 0 {
		for j := i + 1; j <= i+int(wire[i]) && j < len(wire); j++ {
			if c := wire[j]; c >= 'A' && c <= 'Z' {
				wire[j] = c + 'a' - 'A'
			}
		}
		i += int(wire[i]) + 1
	}
	return full[:n], i + 1, nil
}

// appendCanonicalCommon is AppendCanonical for the types appendCommon writes, without
// dns.PackRR: the same bytes (TestAppendCanonicalMatches) at a few times its speed, as every
// record of a full zone goes through it. ok is false, buf unchanged, for another type and
// for a record PackRR might pack otherwise or refuse (escapes in a name, a long string).
func appendCanonicalCommon(buf []byte, rr dns.RR) (_ []byte, owner int, ok bool) {
	h := rr.Header()
	if rrtypeOf(rr) != h.Rrtype {
		return buf, 0, false
	}
	start := len(buf)
	if buf, ok = appendWireName(buf, h.Name); !ok {
		return buf[:start], 0, false
	}
	owner = len(buf) - start
	for i := start; i < len(buf); i++ { // label lengths (at most 63) are never 'A'..'Z'
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	buf = binary.BigEndian.AppendUint16(buf, h.Rrtype)
	buf = binary.BigEndian.AppendUint16(buf, h.Class)
	buf = binary.BigEndian.AppendUint32(buf, h.Ttl)
	rdata := len(buf) + 2
	buf = append(buf, 0, 0)
	switch rr := rr.(type) {
	case *dns.A:
		ip := rr.A.To4()
		ok = ip != nil
		buf = append(buf, ip...)
	case *dns.AAAA:
		ok = len(rr.AAAA) == net.IPv6len
		buf = append(buf, rr.AAAA...)
	case *dns.NS:
		buf, ok = appendWireName(buf, rr.Ns)
	case *dns.CNAME:
		buf, ok = appendWireName(buf, rr.Target)
	case *dns.DNAME:
		buf, ok = appendWireName(buf, rr.Target)
	case *dns.PTR:
		buf, ok = appendWireName(buf, rr.Ptr)
	case *dns.MX:
		buf, ok = appendWireName(binary.BigEndian.AppendUint16(buf, rr.Preference), rr.Mx)
	case *dns.SRV:
		buf = binary.BigEndian.AppendUint16(buf, rr.Priority)
		buf = binary.BigEndian.AppendUint16(buf, rr.Weight)
		buf, ok = appendWireName(binary.BigEndian.AppendUint16(buf, rr.Port), rr.Target)
	case *dns.SOA:
		if buf, ok = appendWireName(buf, rr.Ns); ok {
			buf, ok = appendWireName(buf, rr.Mbox)
		}
		for _, n := range [...]uint32{rr.Serial, rr.Refresh, rr.Retry, rr.Expire, rr.Minttl} {
			buf = binary.BigEndian.AppendUint32(buf, n)
		}
	case *dns.TXT:
		buf, ok = appendWireStrings(buf, rr.Txt)
	case *dns.SPF:
		buf, ok = appendWireStrings(buf, rr.Txt)
	}
	n := len(buf) - rdata
	if !ok || n > 0xffff {
		return buf[:start], 0, false
	}
	binary.BigEndian.PutUint16(buf[rdata-2:], uint16(n))
	return buf, owner, true
}

// appendWireName appends a fully qualified name without escapes in wire form, labels as
// they are (RFC 1035 §3.1); ok is false for anything else.
func appendWireName(buf []byte, name string) ([]byte, bool) {
	if name == "." {
		return append(buf, 0), true
	}
	if len(name) > 254 || !strings.HasSuffix(name, ".") || strings.IndexByte(name, '\\') >= 0 {
		return buf, false
	}
	for rest := name; rest != ""; {
		dot := strings.IndexByte(rest, '.')
		if dot < 1 || dot > 63 {
			return buf, false
		}
		buf = append(append(buf, byte(dot)), rest[:dot]...)
		rest = rest[dot+1:]
	}
	return append(buf, 0), true
}

// appendWireStrings appends character-strings from the escaped form miekg/dns holds them
// in (`\X` is X, `\DDD` the byte DDD, a lone '\\' at the end is dropped), each behind its
// length; ok is false for an empty list or a string over 255 bytes.
func appendWireStrings(buf []byte, txt []string) ([]byte, bool) {
	if len(txt) == 0 {
		return buf, false
	}
	for _, s := range txt {
		at := len(buf)
		buf = append(buf, 0)
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c == '\\' {
				j++
				if j == len(s) {
					break
				}
				c = s[j]
				if rest := s[j:]; len(rest) >= 3 && isDigit(rest[0]) && isDigit(rest[1]) && isDigit(rest[2]) {
					c = (rest[0]-'0')*100 + (rest[1]-'0')*10 + (rest[2] - '0')
					j += 2
				}
			}
			buf = append(buf, c)
		}
		n := len(buf) - at - 1
		if n > 255 {
			return buf, false
		}
		buf[at] = byte(n)
	}
	return buf, true
}

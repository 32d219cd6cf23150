package backend

import (
	"encoding/hex"
	"net"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// portable lists the types whose presentation format BIND 9.18, Knot DNS 3.2 and NSD 4.6
// all read as miekg/dns writes it. Every other type is written in the generic format of
// RFC 3597 §5 (`TYPE260 \# 6 0a0b...`), which all three accept for any type, known or not:
// Knot refuses the mnemonics of AMTRELAY, HIP, GPOS, MB, X25... and NSD those of TA, RKEY...
var portable = map[uint16]bool{}

func init() {
	for _, t := range []uint16{
		dns.TypeA, dns.TypeNS, dns.TypeCNAME, dns.TypeSOA, dns.TypePTR, dns.TypeHINFO,
		dns.TypeMINFO, dns.TypeMX, dns.TypeTXT, dns.TypeRP, dns.TypeAFSDB, dns.TypeRT,
		dns.TypeKEY, dns.TypeAAAA, dns.TypeLOC, dns.TypeSRV, dns.TypeNAPTR, dns.TypeKX,
		dns.TypeCERT, dns.TypeDNAME, dns.TypeAPL, dns.TypeDS, dns.TypeSSHFP, dns.TypeIPSECKEY,
		dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY, dns.TypeDHCID, dns.TypeNSEC3,
		dns.TypeNSEC3PARAM, dns.TypeTLSA, dns.TypeSMIMEA, dns.TypeCDS, dns.TypeCDNSKEY,
		dns.TypeOPENPGPKEY, dns.TypeCSYNC, dns.TypeZONEMD, dns.TypeSVCB, dns.TypeHTTPS,
		dns.TypeSPF, dns.TypeNID, dns.TypeL32, dns.TypeL64, dns.TypeLP, dns.TypeEUI48,
		dns.TypeEUI64, dns.TypeURI, dns.TypeCAA,
	} {
		portable[t] = true
	}
}

// typeLists says which rdata fields (counted from 0, split on spaces) of a portable type
// are type mnemonics, [from, to): a type that is not portable must be written TYPEnnn
// there too (RFC 3597 §5).
var typeLists = map[uint16][2]int{
	dns.TypeRRSIG: {0, 1},       // type covered
	dns.TypeNSEC:  {1, 1 << 30}, // after the next owner name
	dns.TypeNSEC3: {5, 1 << 30}, // after alg, flags, iterations, salt, next hash
	dns.TypeCSYNC: {2, 1 << 30}, // after serial and flags
}

// Presentation is rr as one master-file line that BIND, Knot and NSD all load as the same
// record: miekg/dns's rr.String(), except that
//   - a type they do not all know is written in RFC 3597's generic form, with its class as
//     a mnemonic (miekg writes `CLASS1 TYPE65000`, which Knot refuses);
//   - an SVCB/HTTPS key without a value is written bare (`no-default-alpn`, RFC 9460 §2.1;
//     Knot refuses `no-default-alpn=""`);
//   - a '$' outside quoted strings is escaped (RFC 1035 §5.1: `\X` is X): Knot refuses an
//     unescaped '$' in a domain name, and at the start of a line it would be a directive.
func Presentation(rr dns.RR) string {
	if line, ok := appendCommon(make([]byte, 0, 128), rr); ok {
		return string(line)
	}
	return presentation(rr)
}

// AppendPresentation appends Presentation(rr) to buf, without allocating for the types
// most zones are made of (appendCommon): a zone file is written at the speed it is read.
func AppendPresentation(buf []byte, rr dns.RR) []byte {
	if line, ok := appendCommon(buf, rr); ok {
		return line
	}
	return append(buf, presentation(rr)...)
}

// presentation is Presentation built on rr.String(), for every type.
func presentation(rr dns.RR) string {
	h := rr.Header()
	if !portable[h.Rrtype] {
		return escapeDollars(generic(rr))
	}
	s := rr.String()
	switch h.Rrtype {
	case dns.TypeSVCB, dns.TypeHTTPS:
		// Inside a quoted value a '"' is always escaped, so `=""` is only ever an empty value.
		s = strings.ReplaceAll(s, `=""`, "")
	case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeCSYNC:
		s = portableTypes(s, typeLists[h.Rrtype])
	}
	return escapeDollars(s)
}

// generic renders rr as `owner TTL CLASS TYPEnnn \# len hex` (RFC 3597 §5), the rdata
// uncompressed (§4).
func generic(rr dns.RR) string {
	h := rr.Header()
	buf := make([]byte, dns.Len(rr)+256)
	end, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return rr.String() // an RR that does not pack is refused before it is stored
	}
	rdata := buf[end-int(h.Rdlength) : end]
	hdr := dns.RR_Header{Name: h.Name, Ttl: h.Ttl, Class: h.Class}
	// hdr.String() would print the type as "None"; write the fields ourselves.
	owner := strings.SplitN(hdr.String(), "\t", 2)[0]
	line := owner + "\t" + strconv.FormatUint(uint64(h.Ttl), 10) + "\t" + dns.Class(h.Class).String() +
		"\tTYPE" + strconv.Itoa(int(h.Rrtype)) + "\t\\# " + strconv.Itoa(len(rdata))
	if len(rdata) > 0 {
		line += " " + hex.EncodeToString(rdata)
	}
	return line
}

// portableTypes rewrites the type mnemonics in rdata fields [r[0], r[1]) of line as TYPEnnn
// when the type is not portable.
func portableTypes(line string, r [2]int) string {
	fields := strings.SplitN(line, "\t", 5)
	if len(fields) != 5 {
		return line
	}
	data := strings.Split(fields[4], " ")
	changed := false
	for i := r[0]; i < r[1] && i < len(data); i++ {
		if t, ok := dns.StringToType[data[i]]; ok && !portable[t] {
			data[i] = "TYPE" + strconv.Itoa(int(t))
			changed = true
		}
	}
	if !changed {
		return line
	}
	fields[4] = strings.Join(data, " ")
	return strings.Join(fields, "\t")
}

// escapeDollars escapes every '$' that is not inside a quoted string and not escaped yet.
func escapeDollars(s string) string {
	if strings.IndexByte(s, '$') < 0 {
		return s
	}
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			b.WriteByte(c)
			i++
			b.WriteByte(s[i])
			continue
		case c == '"':
			quoted = !quoted
		case c == '$' && !quoted:
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// appendCommon appends Presentation(rr) for class IN records of the types A, AAAA, NS,
// CNAME, DNAME, PTR, MX, SRV, SOA, TXT and SPF whose names need no escaping, byte for byte
// what presentation writes (TestAppendPresentationMatches), straight into buf. ok is false
// for any other record, buf then unchanged.
func appendCommon(buf []byte, rr dns.RR) (_ []byte, ok bool) {
	h := rr.Header()
	if h.Class != dns.ClassINET || !plainName(h.Name) || rrtypeOf(rr) != h.Rrtype {
		return buf, false
	}
	start := len(buf)
	buf = append(buf, h.Name...)
	buf = append(buf, '\t')
	buf = strconv.AppendUint(buf, uint64(h.Ttl), 10)
	buf = append(buf, "\tIN\t"...)
	ok = true
	switch rr := rr.(type) {
	case *dns.A:
		if ok = rr.A.To4() != nil; ok {
			buf, _ = rr.A.AppendText(append(buf, "A\t"...)) // dotted quad, as net.IP.String
		}
	case *dns.AAAA:
		// miekg/dns writes an IPv4-mapped address as ::ffff:a.b.c.d: left to it.
		if ok = len(rr.AAAA) == net.IPv6len && rr.AAAA.To4() == nil; ok {
			buf, _ = rr.AAAA.AppendText(append(buf, "AAAA\t"...))
		}
	case *dns.NS:
		buf, ok = appendName(append(buf, "NS\t"...), rr.Ns)
	case *dns.CNAME:
		buf, ok = appendName(append(buf, "CNAME\t"...), rr.Target)
	case *dns.DNAME:
		buf, ok = appendName(append(buf, "DNAME\t"...), rr.Target)
	case *dns.PTR:
		buf, ok = appendName(append(buf, "PTR\t"...), rr.Ptr)
	case *dns.MX:
		buf = strconv.AppendUint(append(buf, "MX\t"...), uint64(rr.Preference), 10)
		buf, ok = appendName(append(buf, ' '), rr.Mx)
	case *dns.SRV:
		buf = strconv.AppendUint(append(buf, "SRV\t"...), uint64(rr.Priority), 10)
		buf = strconv.AppendUint(append(buf, ' '), uint64(rr.Weight), 10)
		buf = strconv.AppendUint(append(buf, ' '), uint64(rr.Port), 10)
		buf, ok = appendName(append(buf, ' '), rr.Target)
	case *dns.SOA:
		buf, ok = appendName(append(buf, "SOA\t"...), rr.Ns)
		if ok {
			buf, ok = appendName(append(buf, ' '), rr.Mbox)
		}
		for _, n := range [...]uint32{rr.Serial, rr.Refresh, rr.Retry, rr.Expire, rr.Minttl} {
			buf = strconv.AppendUint(append(buf, ' '), uint64(n), 10)
		}
	case *dns.TXT:
		buf = appendStrings(append(buf, "TXT\t"...), rr.Txt)
	case *dns.SPF:
		buf = appendStrings(append(buf, "SPF\t"...), rr.Txt)
	default:
		ok = false
	}
	if !ok {
		return buf[:start], false
	}
	return buf, true
}

// rrtypeOf is the type of rr's Go type among those appendCommon writes, 0 for the others:
// a header saying another type (built by hand) is left to presentation.
func rrtypeOf(rr dns.RR) uint16 {
	switch rr.(type) {
	case *dns.A:
		return dns.TypeA
	case *dns.AAAA:
		return dns.TypeAAAA
	case *dns.NS:
		return dns.TypeNS
	case *dns.CNAME:
		return dns.TypeCNAME
	case *dns.DNAME:
		return dns.TypeDNAME
	case *dns.PTR:
		return dns.TypePTR
	case *dns.MX:
		return dns.TypeMX
	case *dns.SRV:
		return dns.TypeSRV
	case *dns.SOA:
		return dns.TypeSOA
	case *dns.TXT:
		return dns.TypeTXT
	case *dns.SPF:
		return dns.TypeSPF
	}
	return 0
}

// plainName reports whether a domain name (as miekg/dns holds it) is written as it is:
// no escapes, no byte that would need one, no '$' (escapeDollars).
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || needsEscape[c] {
			return false
		}
	}
	return true
}

// needsEscape are the printable bytes a name label must escape (RFC 1035 §5.1: ';' starts
// a comment, '(' ')' group lines, '"' quotes, '@' is the origin, '\\' escapes), and '$'.
var needsEscape = [256]bool{'\'': true, '@': true, ';': true, '(': true, ')': true, '"': true, '\\': true, '$': true}

func appendName(buf []byte, name string) ([]byte, bool) {
	if !plainName(name) {
		return buf, false
	}
	return append(buf, name...), true
}

// appendStrings writes character-strings as miekg/dns does: each quoted, separated by a
// space, '"' and '\\' escaped, other bytes outside ' '..'~' as \DDD (RFC 1035 §5.1). The
// strings hold the escapes miekg/dns unpacks them with (`\"`, `\\`, `\DDD`): they are
// decoded first, and a string ending in a lone '\\' ends there.
func appendStrings(buf []byte, txt []string) []byte {
	for i, s := range txt {
		if i > 0 {
			buf = append(buf, ' ')
		}
		buf = append(buf, '"')
		for j := 0; j < len(s); {
			c, n := s[j], 1
			if c == '\\' {
				switch rest := s[j+1:]; {
				case len(rest) == 0:
					n = 0 // a dangling escape: the string ends
				case len(rest) >= 3 && isDigit(rest[0]) && isDigit(rest[1]) && isDigit(rest[2]):
					c, n = (rest[0]-'0')*100+(rest[1]-'0')*10+(rest[2]-'0'), 4
				default:
					c, n = rest[0], 2
				}
			}
			if n == 0 {
				break
			}
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c < ' ' || c > '~':
				buf = append(buf, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
			default:
				buf = append(buf, c)
			}
			j += n
		}
		buf = append(buf, '"')
	}
	return buf
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

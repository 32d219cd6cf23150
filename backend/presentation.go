package backend

import (
	"encoding/hex"
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

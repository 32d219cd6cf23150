package powerdns

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// row is one line of the records table as PowerDNS reads it. Type "" is an empty
// non-terminal (type SQL NULL, no content).
type row struct {
	ID      int64  // records.id, when read from the database
	Name    string // PowerDNS text form: lower case, escaped, no trailing dot
	Type    string
	Content string
	TTL     uint32
	Prio    int
	Auth    bool
	// Disabled: a row PowerDNS does not serve (NSEC, NSEC3, NSEC3PARAM of a presigned
	// zone, which it builds itself from ordername; see dnssec.go).
	Disabled bool
	// Order is the ordername column, NULL unless Ordered.
	Order   string
	Ordered bool
}

// key identifies the record a row holds: RFC 2181 §5 makes records equal in owner, type and
// data one record, whatever their TTL. Content compares byte for byte (TXT data is
// case-sensitive); the owner is lower case already.
func (r row) key() string {
	return r.Name + "\x00" + r.Type + "\x00" + strconv.Itoa(r.Prio) + "\x00" + r.Content
}

// size estimates the bytes a row takes in an INSERT statement.
func (r row) size() int { return len(r.Name) + len(r.Content) + 64 }

// Column sizes of schema.mysql.sql (PowerDNS 4.7). A longer value would be cut or refused
// by MariaDB depending on sql_mode; we refuse it ourselves, with the record in the message.
const (
	maxNameLen    = 255   // records.name VARCHAR(255)
	maxContentLen = 64000 // records.content VARCHAR(64000)
)

// storedTypes are the record types the agent writes to the records table, each checked
// against pdns_server 4.7 (tests/powerdns_test.go, TestPDNSRecordTypes): the content is
// miekg's presentation of the rdata with the trailing dots of names removed, which is
// the zone-file syntax PowerDNS parses (doc.powerdns.com/authoritative/appendices/types.html).
// DNSSEC records are stored as PowerDNS's own secondary stores a presigned zone (see
// dnssec.go). Anything else is refused rather than stored in a form PowerDNS might serve
// wrongly: meta types because they are not zone data, and types PowerDNS has no text
// parser for.
var storedTypes = map[uint16]bool{
	dns.TypeA: true, dns.TypeAAAA: true, dns.TypeNS: true, dns.TypeCNAME: true,
	dns.TypeDNAME: true, dns.TypePTR: true, dns.TypeMX: true, dns.TypeSRV: true,
	dns.TypeTXT: true, dns.TypeSPF: true, dns.TypeSOA: true, dns.TypeCAA: true,
	dns.TypeNAPTR: true, dns.TypeSSHFP: true, dns.TypeTLSA: true, dns.TypeSMIMEA: true,
	dns.TypeDS: true, dns.TypeCDS: true, dns.TypeDNSKEY: true, dns.TypeCDNSKEY: true,
	dns.TypeHINFO: true, dns.TypeRP: true, dns.TypeAFSDB: true, dns.TypeKX: true,
	dns.TypeLOC: true, dns.TypeCERT: true, dns.TypeURI: true, dns.TypeOPENPGPKEY: true,
	dns.TypeDHCID: true, dns.TypeIPSECKEY: true, dns.TypeEUI48: true, dns.TypeEUI64: true,
	dns.TypeNID: true, dns.TypeL32: true, dns.TypeL64: true, dns.TypeLP: true,
	dns.TypeMINFO: true, dns.TypeMR: true, dns.TypeCSYNC: true, dns.TypeSVCB: true,
	dns.TypeHTTPS: true, dns.TypeAPL: true, dns.TypeZONEMD: true,
	dns.TypeRRSIG: true, dns.TypeNSEC: true, dns.TypeNSEC3: true, dns.TypeNSEC3PARAM: true,
}

// privateType: RFC 6895 §3.1 private use, where BIND keeps its signing-state records
// (sig-signing-type, 65534 by default) in every zone it signs. They are transferred and
// covered by the apex NSEC/NSEC3 bitmap, so PowerDNS must hold them to serve that bitmap.
// PowerDNS stores them in RFC 3597 form, "\# LEN HEX" with type "TYPEnnn".
func privateType(t uint16) bool { return t >= 65280 && t <= 65534 }

// refusedWhy explains the refusal of a type that is not stored.
func refusedWhy(t uint16) string {
	switch t {
	case dns.TypeSIG, dns.TypeNXT:
		return "obsolete DNSSEC type (RFC 3755)"
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR:
		return "a meta type is not zone data"
	}
	return "PowerDNS 4.7 has no text format for it that the agent has verified"
}

// toRow converts a record to the row PowerDNS expects (SPEC §4 powerdns): owner and
// names in the content without trailing dots, MX and SRV priority in the prio column
// (PowerDNS serves prio + " " + content for those two types, as its own AXFR client
// stores them), TXT quoted and escaped, SOA "mname rname serial refresh retry expire
// minimum". Auth is decided later, when the delegations are known.
func toRow(rr dns.RR) (row, error) {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		return row{}, fmt.Errorf("record %s: class %s: PowerDNS serves class IN only", rr, dns.ClassToString[h.Class])
	}
	if !storedTypes[h.Rrtype] && !privateType(h.Rrtype) {
		return row{}, fmt.Errorf("record %s: type %s cannot be stored in PowerDNS: %s", rr, dns.Type(h.Rrtype), refusedWhy(h.Rrtype))
	}
	name, err := pdnsName(h.Name)
	if err != nil {
		return row{}, fmt.Errorf("record %s: owner: %w", rr, err)
	}
	r := row{Name: name, Type: dns.Type(h.Rrtype).String(), TTL: h.Ttl}
	switch h.Rrtype {
	case dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM:
		r.Disabled = true
	}
	stripped := dns.Copy(rr)
	if err := stripNames(stripped); err != nil {
		return row{}, fmt.Errorf("record %s: %w", rr, err)
	}
	switch v := stripped.(type) {
	case *dns.MX:
		r.Prio, r.Content = int(v.Preference), v.Mx
	case *dns.SRV:
		r.Prio = int(v.Priority)
		r.Content = strconv.Itoa(int(v.Weight)) + " " + strconv.Itoa(int(v.Port)) + " " + v.Target
	case *dns.CERT:
		// PowerDNS reads the certificate type and algorithm as numbers only; miekg
		// prints mnemonics ("PGP", "RSASHA256").
		r.Content = fmt.Sprintf("%d %d %d %s", v.Type, v.KeyTag, v.Algorithm, v.Certificate)
	case *dns.SVCB:
		r.Content, err = svcbContent(v.Priority, v.Target, v.Value)
	case *dns.HTTPS:
		r.Content, err = svcbContent(v.Priority, v.Target, v.Value)
	case *dns.RFC3597:
		r.Content = fmt.Sprintf("\\# %d %s", len(v.Rdata)/2, strings.ToLower(v.Rdata))
	default:
		r.Content = strings.TrimPrefix(stripped.String(), stripped.Header().String())
	}
	if err != nil {
		return row{}, fmt.Errorf("record %s: %w", rr, err)
	}
	if len(r.Name) > maxNameLen {
		return row{}, fmt.Errorf("record %s: owner is longer than %d characters in PowerDNS form (records.name)", rr, maxNameLen)
	}
	if len(r.Content) > maxContentLen {
		return row{}, fmt.Errorf("record %s: content is longer than %d characters (records.content)", rr, maxContentLen)
	}
	return r, nil
}

// svcbContent writes SVCB and HTTPS rdata the way PowerDNS 4.7 parses it: miekg quotes
// every value, but PowerDNS wants port (and takes the other numeric and address lists)
// unquoted and no-default-alpn without a value. Keys PowerDNS 4.7 does not know are
// refused.
func svcbContent(prio uint16, target string, params []dns.SVCBKeyValue) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", prio, target)
	for _, kv := range params {
		key := kv.Key()
		switch key {
		case dns.SVCB_NO_DEFAULT_ALPN:
			fmt.Fprintf(&b, " %s", key)
		case dns.SVCB_PORT, dns.SVCB_IPV4HINT, dns.SVCB_IPV6HINT, dns.SVCB_MANDATORY:
			fmt.Fprintf(&b, " %s=%s", key, kv.String())
		case dns.SVCB_ALPN, dns.SVCB_ECHCONFIG:
			fmt.Fprintf(&b, " %s=\"%s\"", key, kv.String()) // as miekg escapes it
		default:
			return "", fmt.Errorf("SvcParam %s is unknown to PowerDNS 4.7", key)
		}
	}
	return b.String(), nil
}

// stripNames rewrites every domain name inside the rdata to PowerDNS's form.
func stripNames(rr dns.RR) error {
	var names []*string
	switch v := rr.(type) {
	case *dns.NS:
		names = []*string{&v.Ns}
	case *dns.CNAME:
		names = []*string{&v.Target}
	case *dns.DNAME:
		names = []*string{&v.Target}
	case *dns.PTR:
		names = []*string{&v.Ptr}
	case *dns.MX:
		names = []*string{&v.Mx}
	case *dns.SRV:
		names = []*string{&v.Target}
	case *dns.SOA:
		names = []*string{&v.Ns, &v.Mbox}
	case *dns.NAPTR:
		names = []*string{&v.Replacement}
	case *dns.RP:
		names = []*string{&v.Mbox, &v.Txt}
	case *dns.AFSDB:
		names = []*string{&v.Hostname}
	case *dns.KX:
		names = []*string{&v.Exchanger}
	case *dns.MINFO:
		names = []*string{&v.Rmail, &v.Email}
	case *dns.MR:
		names = []*string{&v.Mr}
	case *dns.LP:
		names = []*string{&v.Fqdn}
	case *dns.SVCB:
		names = []*string{&v.Target}
	case *dns.HTTPS:
		names = []*string{&v.Target}
	case *dns.RRSIG:
		names = []*string{&v.SignerName}
	case *dns.NSEC:
		names = []*string{&v.NextDomain}
	case *dns.IPSECKEY:
		if v.GatewayType == dns.IPSECGatewayHost {
			names = []*string{&v.GatewayHost}
		}
	}
	for _, n := range names {
		s, err := contentName(*n)
		if err != nil {
			return err
		}
		*n = s
	}
	return nil
}

// contentName is a name inside the content: PowerDNS form but with its case kept, as the
// primary serves it.
func contentName(name string) (string, error) {
	return escapeName(name, false)
}

// pdnsName is an owner name as PowerDNS stores and looks it up: lower case (PowerDNS
// lowercases the qname before querying the backend), labels escaped the way PowerDNS's
// DNSName::toString does, no trailing dot, "." for the root.
func pdnsName(name string) (string, error) {
	return escapeName(name, true)
}

func escapeName(name string, lower bool) (string, error) {
	buf := make([]byte, 256)
	end, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("name %q: %w", name, err)
	}
	wire := buf[:end]
	if len(wire) == 1 {
		return ".", nil
	}
	var b strings.Builder
	for i := 0; wire[i] != 0; {
		n := int(wire[i])
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range wire[i+1 : i+1+n] {
			if lower && c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			switch {
			case c == '.' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c > ' ' && c < 0x7f:
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "\\%03d", c)
			}
		}
		i += n + 1
	}
	return b.String(), nil
}

// parent returns the name one label up, skipping escaped dots; ok is false for a single
// label.
func parent(name string) (string, bool) {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++ // an escaped character, or the first digit of \DDD, is never a separator
		case '.':
			return name[i+1:], true
		}
	}
	return "", false
}

// between calls fn for every name strictly between zone and name, nearest first. name
// must be at or below zone.
func between(zone, name string, fn func(string)) {
	if name == zone {
		return
	}
	for n, ok := parent(name); ok && n != zone; n, ok = parent(n) {
		fn(n)
	}
}

// soaSerial reads the serial from SOA content.
func soaSerial(content string) (uint32, error) {
	f := strings.Fields(content)
	if len(f) != 7 {
		return 0, fmt.Errorf("SOA content %q does not have 7 fields", content)
	}
	n, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("SOA content %q: serial: %w", content, err)
	}
	return uint32(n), nil
}

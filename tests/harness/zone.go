package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Zone describes one deterministic version of a generated zone: the SOA, the apex NS with
// its glue, and the generated records with indexes First .. First+Count-1, plus Extra lines
// appended verbatim. Record i always has the same owner and data, so two versions share
// exactly the records whose indexes overlap. Next gives the following version.
type Zone struct {
	Name   string   // zone name, with or without the trailing dot
	Serial uint32   // SOA serial
	First  int      // index of the first generated record
	Count  int      // number of generated records
	Extra  []string // zone-file lines appended as they are (absolute names advised)
}

// NewZone is Zone{Name: name, Serial: serial, Count: n}.
func NewZone(name string, serial uint32, n int) Zone {
	return Zone{Name: name, Serial: serial, Count: n}
}

// GenerateZone returns the text of a zone file for name with the given serial, SOA, NS
// (with a glue A record) and n records mixing A, AAAA, TXT (some with spaces, quotes and
// several strings), MX and CNAME. It is deterministic.
func GenerateZone(name string, serial uint32, n int) string {
	return NewZone(name, serial, n).Text()
}

// Next returns the following version: serial+1, the first drop generated records removed
// and add new ones appended. Extra lines are kept.
func (z Zone) Next(drop, add int) Zone {
	if drop > z.Count {
		drop = z.Count
	}
	n := z
	n.Serial = z.Serial + 1
	n.First = z.First + drop
	n.Count = z.Count - drop + add
	n.Extra = append([]string(nil), z.Extra...)
	return n
}

// WithSerial returns the same records under another serial.
func (z Zone) WithSerial(serial uint32) Zone {
	n := z
	n.Serial = serial
	return n
}

// Origin is the zone name, fully qualified and lower case.
func (z Zone) Origin() string { return fqdn(z.Name) }

// Text renders the zone file (absolute names, SOA first).
func (z Zone) Text() string {
	o := z.Origin()
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL 300\n")
	fmt.Fprintf(&b, "%s 3600 IN SOA ns1.%s hostmaster.%s %d 3600 600 86400 300\n", o, o, o, z.Serial)
	fmt.Fprintf(&b, "%s 3600 IN NS ns1.%s\n", o, o)
	fmt.Fprintf(&b, "ns1.%s 3600 IN A 127.0.0.1\n", o)
	for i := z.First; i < z.First+z.Count; i++ {
		b.WriteString(genRecord(o, i))
		b.WriteByte('\n')
	}
	for _, l := range z.Extra {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// genRecord is generated record i of zone o. CNAME targets are inside the zone, MX targets
// outside it (a primary's integrity checks then never depend on which records exist).
func genRecord(o string, i int) string {
	owner := fmt.Sprintf("r%d.%s", i, o)
	ttl := 300 + (i%7)*60
	switch i % 8 {
	case 0:
		return fmt.Sprintf("%s %d IN A 10.%d.%d.%d", owner, ttl, (i>>16)&255, (i>>8)&255, i&255)
	case 1:
		return fmt.Sprintf("%s %d IN AAAA 2001:db8::%x:%x", owner, ttl, (i>>16)&0xffff, i&0xffff)
	case 2:
		return fmt.Sprintf(`%s %d IN TXT "record %d with spaces" "and \"quotes\" inside"`, owner, ttl, i)
	case 3:
		return fmt.Sprintf("%s %d IN MX %d mx%d.mail.example.net.", owner, ttl, 10+i%50, i)
	case 4:
		return fmt.Sprintf("%s %d IN CNAME r%d.%s", owner, ttl, i-4, o)
	case 5:
		return fmt.Sprintf(`%s %d IN TXT "v=spf1 ip4:10.%d.0.0/16 -all"`, owner, ttl, i&255)
	case 6:
		// two A records in one RRset
		return fmt.Sprintf("%s %d IN A 192.0.2.%d\n%s %d IN A 198.51.100.%d", owner, ttl, i&255, owner, ttl, (i+1)&255)
	default:
		return fmt.Sprintf(`%s %d IN TXT "semi;colon and #hash" "back\\slash" "%d"`, owner, ttl, i)
	}
}

// BigTXT returns zone-file lines for one TXT RRset at owner made of n strings of 100
// characters: with n >= 6 its UDP answer does not fit 512 bytes.
func BigTXT(owner string, n int) []string {
	var l []string
	for i := 0; i < n; i++ {
		l = append(l, fmt.Sprintf(`%s 300 IN TXT "%02d-%s"`, owner, i, strings.Repeat("x", 97)))
	}
	return l
}

// SerialOf returns the SOA serial in zone-file text, or 0 and false.
func SerialOf(text, origin string) (uint32, bool) {
	zp := dns.NewZoneParser(strings.NewReader(text), dns.Fqdn(origin), "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, is := rr.(*dns.SOA); is {
			return soa.Serial, true
		}
	}
	return 0, false
}

// ParseZoneText parses zone-file text into records.
func ParseZoneText(text, origin string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), dns.Fqdn(origin), "")
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	return rrs, zp.Err()
}

// ParseZoneFile reads and parses a zone file written by the agent. The first record must
// be the SOA (the contract of every file the agent writes).
func ParseZoneFile(path, origin string) ([]dns.RR, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rrs, err := ParseZoneText(string(data), origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rrs) == 0 {
		return nil, fmt.Errorf("%s: no records", path)
	}
	if _, ok := rrs[0].(*dns.SOA); !ok {
		return nil, fmt.Errorf("%s: first record is %s, not the SOA", path, rrs[0])
	}
	return rrs, nil
}

// Canonical turns records into a sorted set of strings: owner names lower-cased, one
// entry per distinct record (duplicates collapse, as they do in DNS).
func Canonical(rrs []dns.RR) []string {
	seen := map[string]bool{}
	var out []string
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = strings.ToLower(c.Header().Name)
		s := c.String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// AXFRSet canonicalises an AXFR result, dropping the closing SOA.
func AXFRSet(rrs []dns.RR) []string {
	if n := len(rrs); n >= 2 {
		if _, ok := rrs[n-1].(*dns.SOA); ok {
			rrs = rrs[:n-1]
		}
	}
	return Canonical(rrs)
}

// ZoneFileSet reads the zone file at path and canonicalises it.
func ZoneFileSet(path, origin string) ([]string, error) {
	rrs, err := ParseZoneFile(path, origin)
	if err != nil {
		return nil, err
	}
	return Canonical(rrs), nil
}

// ZoneFileSerial returns the serial of the SOA that starts the zone file at path.
func ZoneFileSerial(path, origin string) (uint32, error) {
	rrs, err := ParseZoneFile(path, origin)
	if err != nil {
		return 0, err
	}
	return rrs[0].(*dns.SOA).Serial, nil
}

// DiffSets describes how got differs from want (sorted canonical sets), showing at most
// max entries per side; "" when equal.
func DiffSets(want, got []string, max int) string {
	if max <= 0 {
		max = 10
	}
	w := map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	g := map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	var missing, extra []string
	for _, s := range want {
		if !g[s] {
			missing = append(missing, s)
		}
	}
	for _, s := range got {
		if !w[s] {
			extra = append(extra, s)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "want %d records, got %d: %d missing, %d unexpected", len(want), len(got), len(missing), len(extra))
	for i, s := range missing {
		if i == max {
			fmt.Fprintf(&b, "\n  - ... %d more", len(missing)-max)
			break
		}
		fmt.Fprintf(&b, "\n  - %s", s)
	}
	for i, s := range extra {
		if i == max {
			fmt.Fprintf(&b, "\n  + ... %d more", len(extra)-max)
			break
		}
		fmt.Fprintf(&b, "\n  + %s", s)
	}
	return b.String()
}

// ZoneFileName is where the file backend keeps zone (SPEC §4): zone name lower-cased,
// without the trailing dot, plus ".zone"; for a name over 238 characters its first 200,
// '~' and 16 hex digits of the SHA-256 of the whole name (README, zone files).
func ZoneFileName(zone string) string {
	name := strings.TrimSuffix(fqdn(zone), ".")
	if len(name) > 238 {
		sum := sha256.Sum256([]byte(name))
		name = name[:200] + "~" + hex.EncodeToString(sum[:8])
	}
	return name + ".zone"
}

// MustZoneFileSet is ZoneFileSet failing the test on error.
func MustZoneFileSet(t testing.TB, path, origin string) []string {
	t.Helper()
	s, err := ZoneFileSet(path, origin)
	if err != nil {
		t.Fatalf("zone file: %v", err)
	}
	return s
}

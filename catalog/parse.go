package catalog

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/miekg/dns"
)

// SchemaVersion is the only catalog schema version consumed (RFC 9432 §4.2.1).
const SchemaVersion = "2"

// Catalog is one valid version of a catalog zone.
type Catalog struct {
	Zone    string
	Serial  uint32
	Members map[string]Member // by member zone name, canonical
	// Unusable lists member zones the agent cannot hold (a name no backend accepts, or a
	// consumed catalog zone), with the reason; they are left out of Members.
	Unusable map[string]string
}

// Member is one member zone as a catalog lists it.
type Member struct {
	Zone   string   `json:"zone"`
	Label  string   `json:"label"`            // the unique label (RFC 9432 §4.1)
	Groups []string `json:"groups,omitempty"` // the group property (§4.4.2)
	COO    string   `json:"coo,omitempty"`    // change of ownership to this catalog (§4.4.1)
}

// BrokenError says why a version of a catalog zone must not be processed (RFC 9432: a
// broken catalog zone). Nothing is changed because of such a version.
type BrokenError struct {
	Catalog string
	Serial  uint32
	Reason  string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("catalog %s serial %d is broken: %s", e.Catalog, e.Serial, e.Reason)
}

// Parse validates the records of a catalog zone (SOA first, as a backend holds them) and
// returns its member list, or a *BrokenError. It checks what RFC 9432 requires of a
// catalog before it may be processed: SOA and NS at the apex, every record of class IN,
// exactly one version TXT record saying "2", exactly one PTR per unique label, each member
// zone under one unique label only, and at most one coo PTR per member. Records it does
// not know (other properties, extensions) are ignored, as the RFC asks.
func Parse(catalog string, rrs []dns.RR) (*Catalog, error) {
	catalog = backend.CanonicalZone(catalog)
	p := parser{
		catalog: catalog,
		zones:   "zones." + catalog,
		version: "version." + catalog,
		ptrs:    map[string][]string{},
		coos:    map[string][]string{},
		groups:  map[string][]string{},
	}
	for _, rr := range rrs {
		if err := p.add(rr); err != "" {
			return nil, p.broken(err)
		}
	}
	return p.finish()
}

type parser struct {
	catalog, zones, version string
	serial                  uint32
	hasSOA, hasNS           bool
	versions                []string
	ptrs, coos, groups      map[string][]string // by unique label
}

func (p *parser) broken(reason string) *BrokenError {
	return &BrokenError{Catalog: p.catalog, Serial: p.serial, Reason: reason}
}

// add takes one record; it returns why the catalog is broken, or "".
func (p *parser) add(rr dns.RR) string {
	h := rr.Header()
	name := backend.CanonicalZone(h.Name)
	if h.Class != dns.ClassINET {
		return fmt.Sprintf("record %s %s has class %s; every record of a catalog zone must be IN (RFC 9432 §4)",
			name, dns.TypeToString[h.Rrtype], dns.ClassToString[h.Class])
	}
	switch {
	case name == p.catalog:
		switch rr := rr.(type) {
		case *dns.SOA:
			p.serial, p.hasSOA = rr.Serial, true
		case *dns.NS:
			p.hasNS = true
		}
	case name == p.version:
		if txt, ok := rr.(*dns.TXT); ok {
			p.versions = append(p.versions, strings.Join(txt.Txt, ""))
		}
	case dns.IsSubDomain(p.zones, name) && name != p.zones:
		p.addMemberRecord(name, rr)
	}
	return ""
}

// addMemberRecord takes a record below zones.<catalog>: a member PTR at
// <unique>.zones.<catalog>, or a property at <property>.<unique>.zones.<catalog>.
func (p *parser) addMemberRecord(name string, rr dns.RR) {
	labels := dns.SplitDomainName(strings.TrimSuffix(name, "."+p.zones))
	switch len(labels) {
	case 1:
		if ptr, ok := rr.(*dns.PTR); ok {
			p.ptrs[labels[0]] = appendNew(p.ptrs[labels[0]], backend.CanonicalZone(ptr.Ptr))
		}
	case 2:
		unique := labels[1]
		switch rr := rr.(type) {
		case *dns.PTR:
			if labels[0] == "coo" {
				p.coos[unique] = appendNew(p.coos[unique], backend.CanonicalZone(rr.Ptr))
			}
		case *dns.TXT:
			if labels[0] == "group" {
				p.groups[unique] = appendNew(p.groups[unique], strings.Join(rr.Txt, ""))
			}
		}
	}
}

// appendNew adds s unless it is there already: an RRset holds no duplicates.
func appendNew(list []string, s string) []string {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}

func (p *parser) finish() (*Catalog, error) {
	switch {
	case !p.hasSOA:
		return nil, p.broken("no SOA at the apex")
	case !p.hasNS:
		return nil, p.broken("no NS record at the apex")
	case len(p.versions) == 0:
		return nil, p.broken(fmt.Sprintf("no %s TXT record: the schema version is unknown", p.version))
	case len(p.versions) > 1:
		return nil, p.broken(fmt.Sprintf("%s has %d TXT records (%s); exactly one is allowed",
			p.version, len(p.versions), strings.Join(quoted(p.versions), ", ")))
	case p.versions[0] != SchemaVersion:
		return nil, p.broken(fmt.Sprintf("schema version %q is not supported (only %q, RFC 9432)", p.versions[0], SchemaVersion))
	}
	cat := &Catalog{Zone: p.catalog, Serial: p.serial, Members: map[string]Member{}, Unusable: map[string]string{}}
	labelOf := map[string]string{}
	for _, unique := range sortedKeys(p.ptrs) {
		targets := p.ptrs[unique]
		if len(targets) > 1 {
			return nil, p.broken(fmt.Sprintf("unique label %s has %d PTR records (%s); exactly one is allowed",
				unique, len(targets), strings.Join(targets, ", ")))
		}
		zone := targets[0]
		if other, dup := labelOf[zone]; dup {
			return nil, p.broken(fmt.Sprintf("member zone %s is listed under two unique labels, %s and %s", zone, other, unique))
		}
		labelOf[zone] = unique
		if len(p.coos[unique]) > 1 {
			return nil, p.broken(fmt.Sprintf("member %s (%s) has %d coo records; at most one is allowed",
				zone, unique, len(p.coos[unique])))
		}
		if err := backend.ValidateZoneName(zone); err != nil {
			cat.Unusable[zone] = err.Error()
			continue
		}
		if zone == p.catalog {
			cat.Unusable[zone] = "the catalog lists itself"
			continue
		}
		m := Member{Zone: zone, Label: unique, Groups: p.groups[unique]}
		if len(p.coos[unique]) == 1 {
			m.COO = p.coos[unique][0]
		}
		cat.Members[zone] = m
	}
	return cat, nil
}

func quoted(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

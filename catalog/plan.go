package catalog

import (
	"fmt"
	"sort"
	"strings"
)

// actionKind is what reconciliation does to one member zone in the backend.
type actionKind int

const (
	actCreate actionKind = iota // a new member: transfer and create it
	actEnsure                   // a member this catalog owns: create it if it is missing
	actReset                    // its unique label changed: delete it, then create it again
	actDelete                   // removed from the catalog: delete it
)

func (k actionKind) String() string {
	return [...]string{"create", "ensure", "reset", "delete"}[k]
}

type action struct {
	kind actionKind
	zone string
}

// presence is what the backend said about a member zone nobody owns.
type presence int

const (
	absent  presence = iota // not in the backend: the catalog may create it
	present                 // in the backend already (opcode 14, another tool): left alone
	unknown                 // the backend could not tell; try again later
)

// planInput is everything planning looks at; planning itself reads nothing else and
// changes nothing, so it is tested on its own.
type planInput struct {
	catalog string
	next    *Catalog            // the version to apply
	prev    *Catalog            // the last version applied since start, nil if none
	owners  map[string]owner    // persisted ownership of member zones (read only)
	others  map[string]*Catalog // the last applied version of every other consumed catalog (nil: none yet)
	held    map[string]presence // for listed members nobody owns
	ensure  map[string]bool     // owned members to make sure exist (first pass, failures, NOTIFY)
}

// plan is what one version of a catalog changes.
type plan struct {
	actions  []action
	claims   map[string]owner  // ownership to record before acting: new members, new labels, hand-overs to us
	handOffs map[string]owner  // members handed over to another catalog (coo)
	loops    map[string]string // owned members whose coo chain comes back here: kept, not handed on
	ignored  map[string]string // listed members left alone, and why
	retry    map[string]string // listed members the backend could not tell about
	owned    int               // members this catalog owned before this version
	deletes  int
}

// makePlan compares the version to apply with what this catalog owns (RFC 9432 §5):
// new members are created unless the zone exists already; owned members that are no
// longer listed are deleted, unless a coo hands them to another catalog that lists them;
// a member whose unique label changed is reset; a member owned by another catalog is
// taken over only when that catalog's coo names this one.
func makePlan(in planInput) *plan {
	p := &plan{claims: map[string]owner{}, handOffs: map[string]owner{}, loops: map[string]string{},
		ignored: map[string]string{}, retry: map[string]string{}}
	for zone, reason := range in.next.Unusable {
		p.ignored[zone] = reason
	}
	for _, zone := range sortedKeys(in.next.Members) {
		p.member(in, in.next.Members[zone])
	}
	for _, zone := range sortedKeys(in.owners) {
		o := in.owners[zone]
		if o.Catalog != in.catalog {
			continue
		}
		p.owned++
		if _, listed := in.next.Members[zone]; listed {
			continue
		}
		if target, ok := in.cooTarget(in.prev, zone); ok {
			p.handOffs[zone] = owner{Catalog: target, Label: o.Label}
			continue
		}
		p.actions = append(p.actions, action{actDelete, zone})
		p.deletes++
	}
	return p
}

// member plans one listed member.
func (p *plan) member(in planInput, m Member) {
	zone := m.Zone
	if _, isCatalog := in.others[zone]; isCatalog {
		p.ignored[zone] = "it is a consumed catalog zone"
		return
	}
	o, owned := in.owners[zone]
	switch {
	case !owned:
		switch in.held[zone] {
		case absent:
			p.claims[zone] = owner{Catalog: in.catalog, Label: m.Label}
			p.actions = append(p.actions, action{actCreate, zone})
		case present:
			p.ignored[zone] = "the zone exists already and this catalog did not create it (an opcode-14 CREATE or another source owns it)"
		default:
			p.retry[zone] = "the backend could not tell whether the zone exists"
		}
	case o.Catalog == in.catalog:
		if target, ok := in.cooTarget(in.next, zone); ok {
			if !in.cooCycle(zone, in.catalog) {
				p.handOffs[zone] = owner{Catalog: target, Label: o.Label}
				return
			}
			p.loops[zone] = target
		}
		p.keepOrReset(in, zone, o, m)
	case in.others[o.Catalog] != nil && in.others[o.Catalog].Members[zone].COO == in.catalog:
		if in.cooCycle(zone, o.Catalog) {
			p.ignored[zone] = fmt.Sprintf("catalog %s owns the zone and keeps it: its coo names this catalog, "+
				"whose coo leads back to it (coo loop)", o.Catalog)
			return
		}
		p.keepOrReset(in, zone, o, m) // handed over to us by the owner's coo (RFC 9432 §5.6)
	default:
		p.ignored[zone] = fmt.Sprintf("catalog %s owns the zone (a coo there naming this catalog would hand it over)", o.Catalog)
	}
}

// keepOrReset plans a member this catalog owns (or takes over): a different unique label
// resets it (RFC 9432 §5.4: the zone is created again with fresh state).
func (p *plan) keepOrReset(in planInput, zone string, o owner, m Member) {
	switch {
	case o.Catalog != in.catalog || o.Label != m.Label:
		p.claims[zone] = owner{Catalog: in.catalog, Label: m.Label}
		if o.Label != m.Label {
			p.actions = append(p.actions, action{actReset, zone})
		} else {
			p.actions = append(p.actions, action{actEnsure, zone})
		}
	case in.ensure[zone]:
		p.actions = append(p.actions, action{actEnsure, zone})
	}
}

// cooTarget returns the catalog a member's coo in version v hands it to, if that catalog
// is consumed here and lists the member: only then does the ownership change.
func (in planInput) cooTarget(v *Catalog, zone string) (string, bool) {
	if v == nil {
		return "", false
	}
	target := v.Members[zone].COO
	if target == "" || target == in.catalog {
		return "", false
	}
	other := in.others[target]
	if other == nil {
		return "", false
	}
	_, listed := other.Members[zone]
	return target, listed
}

// cooCycle tells whether following the member's coo from catalog start, through the
// catalogs consumed here that list the member, comes back to start. Following such a coo
// would hand the member round the cycle without end, so the owner keeps it.
func (in planInput) cooCycle(zone, start string) bool {
	seen := map[string]bool{}
	for cur := start; !seen[cur]; {
		seen[cur] = true
		v := in.others[cur]
		if cur == in.catalog {
			v = in.next
		}
		if v == nil {
			return false
		}
		m, listed := v.Members[zone]
		if !listed || m.COO == "" {
			return false
		}
		if m.COO == start {
			return true
		}
		cur = m.COO
	}
	return false
}

// held tells whether applying the plan must wait: it would delete more than maxRemoval
// of the members this catalog owns.
func (p *plan) tooManyDeletes(maxRemoval float64) bool {
	return p.deletes > 0 && float64(p.deletes) > maxRemoval*float64(p.owned)
}

// count returns how many actions of kind the plan has.
func (p *plan) count(kind actionKind) int {
	n := 0
	for _, a := range p.actions {
		if a.kind == kind {
			n++
		}
	}
	return n
}

// deleted lists the zones the plan deletes, sorted.
func (p *plan) deleted() []string {
	var zones []string
	for _, a := range p.actions {
		if a.kind == actDelete {
			zones = append(zones, a.zone)
		}
	}
	sort.Strings(zones)
	return zones
}

// String prints the plan for logs and tests: one "kind zone" per line, sorted.
func (p *plan) String() string {
	var lines []string
	for _, a := range p.actions {
		lines = append(lines, a.kind.String()+" "+a.zone)
	}
	for zone, o := range p.handOffs {
		lines = append(lines, "hand-off "+zone+" to "+o.Catalog)
	}
	for zone, target := range p.loops {
		lines = append(lines, "coo loop "+zone+" via "+target)
	}
	for zone := range p.ignored {
		lines = append(lines, "ignore "+zone)
	}
	for zone := range p.retry {
		lines = append(lines, "retry "+zone)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// ErrInconsistent is returned (wrapped) by Apply when a change set does not fit the stored
// zone: its first step starts at another serial, or it deletes a record that is not there.
// The engine then falls back to a full transfer.
var ErrInconsistent = errors.New("change set does not match the stored zone")

// Step is one version step of an incremental transfer (RFC 1995 §4): the records deleted
// from version Old and those added to reach version New. The SOAs are not in Deleted or
// Added; applying the step replaces Old with New.
type Step struct {
	Old, New *dns.SOA
	Deleted  []dns.RR
	Added    []dns.RR
}

// ChangeSet is a whole incremental transfer: consecutive steps, each starting at the
// serial the previous one ended with.
type ChangeSet struct {
	Zone  string
	Steps []Step
}

// From is the serial the change set applies to; To the serial it produces.
func (c *ChangeSet) From() uint32 { return c.Steps[0].Old.Serial }

// To is the serial after the last step.
func (c *ChangeSet) To() uint32 { return c.Steps[len(c.Steps)-1].New.Serial }

// Size counts the records deleted and added over all steps.
func (c *ChangeSet) Size() (deleted, added int) {
	for _, s := range c.Steps {
		deleted += len(s.Deleted)
		added += len(s.Added)
	}
	return deleted, added
}

// String prints the change set the way a dry run or a debug log shows it.
func (c *ChangeSet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "; change set for %s: %d step(s)\n", c.Zone, len(c.Steps))
	for _, s := range c.Steps {
		fmt.Fprintf(&b, "; serial %d -> %d\n", s.Old.Serial, s.New.Serial)
		for _, rr := range s.Deleted {
			fmt.Fprintf(&b, "- %s\n", rr)
		}
		for _, rr := range s.Added {
			fmt.Fprintf(&b, "+ %s\n", rr)
		}
	}
	return b.String()
}

// Incremental is the optional capability of applying a change set in place. Apply must be
// all or nothing: on any error the stored zone is the one before the change set.
type Incremental interface {
	Apply(ctx context.Context, zone string, cs *ChangeSet) error
}

// Key identifies a record the way RFC 1995 deletions name it: owner (case-folded), class,
// type and data; the TTL is not part of it. It is read from Presentation, so a stored line
// (zonefile.Line) gives the same key without being parsed.
func Key(rr dns.RR) string {
	line := Presentation(rr)
	if key, ok := KeyOfLine(line); ok {
		return key
	}
	return line
}

// KeyOfLine is Key of the record whose presentation (Presentation) is line: its first four
// tab-separated fields are owner, TTL, class and type, then comes the data. A backend that
// stores such lines can match records without parsing them. ok is false for a line of
// another shape.
func KeyOfLine(line string) (key string, ok bool) {
	fields := strings.SplitN(line, "\t", 5)
	if len(fields) != 5 || fields[0] == "" {
		return "", false
	}
	return strings.ToLower(fields[0]) + " " + fields[2] + " " + fields[3] + " " + fields[4], true
}

// Patcher applies a change set to a stored zone read record by record, so a backend can
// stream its old copy through it: Keep says which stored records stay, Added lists what to
// write after them, SOA is the new SOA, and Err reports a change set that did not fit.
type Patcher struct {
	from     uint32
	soa      *dns.SOA
	deleted  map[string]*deletion // net deletions
	added    []dns.RR
	addedKey map[string]int // index into added
}

type deletion struct {
	rr       dns.RR
	seen     bool // the stored zone holds it
	optional bool // an earlier step added it: deleted if the zone held it before, else nothing to do
}

// Patcher folds the steps into their net effect. A record added by one step and deleted by
// a later one is not written, and removed only if the zone held it before (adding a record
// held already changes nothing, RFC 2181 §5); one deleted and then added again (a TTL
// change) is replaced. Records equal but for the owner's case are one record.
func (c *ChangeSet) Patcher() *Patcher {
	p := &Patcher{from: c.From(), soa: c.Steps[len(c.Steps)-1].New, deleted: map[string]*deletion{}, addedKey: map[string]int{}}
	for _, step := range c.Steps {
		for _, rr := range step.Deleted {
			k := Key(rr)
			if i, ok := p.addedKey[k]; ok {
				p.added[i] = nil
				delete(p.addedKey, k)
				if p.deleted[k] == nil {
					p.deleted[k] = &deletion{rr: rr, optional: true}
				}
				continue
			}
			if p.deleted[k] == nil {
				p.deleted[k] = &deletion{rr: rr}
			}
		}
		for _, rr := range step.Added {
			k := Key(rr)
			if i, ok := p.addedKey[k]; ok {
				p.added[i] = rr
				continue
			}
			p.addedKey[k] = len(p.added)
			p.added = append(p.added, rr)
		}
	}
	return p
}

// Start checks the stored zone's SOA: the change set must start at its serial.
func (p *Patcher) Start(stored *dns.SOA) error {
	if stored.Serial != p.from {
		return fmt.Errorf("%w: it starts at serial %d, the zone is at %d", ErrInconsistent, p.from, stored.Serial)
	}
	return nil
}

// Keep reports whether a stored record (not the SOA) stays as it is.
func (p *Patcher) Keep(rr dns.RR) bool { return p.KeepKey(Key(rr)) }

// KeepKey is Keep for the record whose Key is k.
func (p *Patcher) KeepKey(k string) bool {
	if d, ok := p.deleted[k]; ok {
		d.seen = true
		return false
	}
	_, replaced := p.addedKey[k]
	return !replaced
}

// SOA is the zone's SOA after the change set.
func (p *Patcher) SOA() *dns.SOA { return p.soa }

// Added lists the records to write after the kept ones.
func (p *Patcher) Added() []dns.RR {
	out := make([]dns.RR, 0, len(p.addedKey))
	for _, rr := range p.added {
		if rr != nil {
			out = append(out, rr)
		}
	}
	return out
}

// Deleted lists the net deletions: the records the stored zone must hold, and those to
// remove only if it holds them. For a backend that deletes by record rather than streaming
// its copy through Keep.
func (p *Patcher) Deleted() (must, ifHeld []dns.RR) {
	for _, d := range p.deleted {
		if d.optional {
			ifHeld = append(ifHeld, d.rr)
		} else {
			must = append(must, d.rr)
		}
	}
	return must, ifHeld
}

// Err reports deletions of records the zone did not hold, once every record went through Keep.
func (p *Patcher) Err() error {
	for k, d := range p.deleted {
		if !d.seen && !d.optional {
			return fmt.Errorf("%w: deleted record %q is not in the zone", ErrInconsistent, k)
		}
	}
	return nil
}

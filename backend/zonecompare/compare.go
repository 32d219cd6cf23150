// Package zonecompare compares the zone a backend really holds with the primary's version
// and reports the difference per RRset, the way `dnsagent verify` prints it and `dnsagent
// resync` applies it. Memory stays bounded for large zones: the held zone is read twice
// and kept only as 64-bit hashes (16 bytes a record), the primary's zone streams once
// (8 bytes a record), and only the records that differ are kept, up to a limit.
package zonecompare

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// DefaultMaxDetail is how many differing records a comparison keeps; beyond it only counts.
const DefaultMaxDetail = 100_000

// ReadFunc reads the held zone, as backend.Reader.Read does for one zone.
type ReadFunc func(ctx context.Context, each func([]dns.RR) error) error

// Result is the difference between the held zone and the primary's.
type Result struct {
	Zone           string   `json:"zone"`
	Equal          bool     `json:"equal"`
	HeldSerial     uint32   `json:"held_serial"`
	PrimarySerial  uint32   `json:"primary_serial"`
	HeldRecords    int      `json:"held_records"`
	PrimaryRecords int      `json:"primary_records"`
	Add            int      `json:"add"`    // RRsets only the primary has
	Delete         int      `json:"delete"` // RRsets only the backend has
	Change         int      `json:"change"` // RRsets both have, with different records
	Changes        []RRset  `json:"changes"`
	Truncated      int      `json:"truncated,omitempty"` // differing records left out past the limit
	heldSOA        *dns.SOA // nil until read
	primarySOA     *dns.SOA
	deleted, added []dns.RR
}

// RRset is the difference at one owner and type: Op is "+" (to add), "-" (to delete) or
// "~" (to change).
type RRset struct {
	Op      string   `json:"op"`
	Owner   string   `json:"owner"`
	Type    string   `json:"type"`
	Deleted []string `json:"deleted,omitempty"`
	Added   []string `json:"added,omitempty"`
}

// Compare reads the held zone, then the primary's (a complete transfer, SOA first), then
// the held zone again for the records the primary lacks. maxDetail bounds the records
// kept (0: DefaultMaxDetail).
func Compare(ctx context.Context, zone string, held ReadFunc, primary backend.Source, maxDetail int) (*Result, error) {
	if maxDetail <= 0 {
		maxDetail = DefaultMaxDetail
	}
	c := &comparer{res: &Result{Zone: zone}, max: maxDetail, sets: map[uint64]setState{}}
	if err := c.readHeld(ctx, held); err != nil {
		return nil, err
	}
	if _, err := (backend.StreamCheck{Zone: zone}).Read(ctx, primary, c.primaryBatch); err != nil {
		return nil, fmt.Errorf("primary's zone: %w", err)
	}
	if err := c.unseenHeld(ctx, held); err != nil {
		return nil, err
	}
	c.finish()
	return c.res, nil
}

type setState uint8

const (
	inDeleted setState = 1 << iota
	inAdded
)

type comparer struct {
	res         *Result
	max         int
	buf         []byte
	held        []uint64 // hashes of the held records, sorted, unique
	heldSets    []uint64 // hashes of the held owner+type pairs, sorted, unique
	seen        []bool   // per held hash: the primary has the record
	primarySets []uint64
	addedSeen   map[uint64]bool // records only the primary has (its duplicates counted once)
	sets        map[uint64]setState
}

// canonical returns the hash of rr's comparison form (backend.AppendCanonical: TTL and
// data included, so a TTL change is a change) and of its owner and type (its RRset).
func (c *comparer) canonical(rr dns.RR) (record, set uint64, err error) {
	var owner int
	c.buf, owner, err = backend.AppendCanonical(c.buf[:0], rr)
	if err != nil {
		return 0, 0, err
	}
	return xxhash.Sum64(c.buf), xxhash.Sum64(c.buf[:min(owner+2, len(c.buf))]), nil
}

func (c *comparer) readHeld(ctx context.Context, read ReadFunc) error {
	err := read(ctx, func(batch []dns.RR) error {
		for _, rr := range batch {
			if soa, ok := rr.(*dns.SOA); ok && c.res.heldSOA == nil {
				c.res.heldSOA = soa
			}
			h, s, err := c.canonical(rr)
			if err != nil {
				return err
			}
			c.held = append(c.held, h)
			c.heldSets = append(c.heldSets, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.res.heldSOA == nil {
		return fmt.Errorf("the backend's copy of %s has no SOA", c.res.Zone)
	}
	slices.Sort(c.held)
	c.held = slices.Compact(c.held)
	slices.Sort(c.heldSets)
	c.heldSets = slices.Compact(c.heldSets)
	c.seen = make([]bool, len(c.held))
	c.res.HeldRecords = len(c.held)
	c.addedSeen = map[uint64]bool{}
	return nil
}

func (c *comparer) primaryBatch(batch []dns.RR) error {
	for _, rr := range batch {
		if soa, ok := rr.(*dns.SOA); ok && c.res.primarySOA == nil {
			c.res.primarySOA = soa
		}
		h, s, err := c.canonical(rr)
		if err != nil {
			return err
		}
		c.primarySets = append(c.primarySets, s)
		if i, ok := slices.BinarySearch(c.held, h); ok {
			if !c.seen[i] {
				c.seen[i] = true
				c.res.PrimaryRecords++
			}
			continue
		}
		if c.addedSeen[h] {
			continue // a duplicate (RFC 2181 §5: one record)
		}
		c.addedSeen[h] = true
		c.res.PrimaryRecords++
		c.sets[s] |= inAdded
		c.keep(&c.res.added, rr)
	}
	return nil
}

func (c *comparer) keep(list *[]dns.RR, rr dns.RR) {
	if len(c.res.deleted)+len(c.res.added) < c.max {
		*list = append(*list, dns.Copy(rr))
	} else {
		c.res.Truncated++
	}
}

// unseenHeld reads the held zone again for the records the primary does not have.
func (c *comparer) unseenHeld(ctx context.Context, read ReadFunc) error {
	return read(ctx, func(batch []dns.RR) error {
		for _, rr := range batch {
			h, s, err := c.canonical(rr)
			if err != nil {
				return err
			}
			i, ok := slices.BinarySearch(c.held, h)
			if !ok || c.seen[i] {
				continue // changed since the first read, or the primary has it, or reported
			}
			c.seen[i] = true
			c.sets[s] |= inDeleted
			c.keep(&c.res.deleted, rr)
		}
		return nil
	})
}

func (c *comparer) finish() {
	slices.Sort(c.primarySets)
	c.primarySets = slices.Compact(c.primarySets)
	for s := range c.sets {
		_, held := slices.BinarySearch(c.heldSets, s)
		_, primary := slices.BinarySearch(c.primarySets, s)
		switch {
		case held && primary:
			c.res.Change++
		case primary:
			c.res.Add++
		default:
			c.res.Delete++
		}
	}
	r := c.res
	r.HeldSerial, r.PrimarySerial = r.heldSOA.Serial, r.primarySOA.Serial
	r.Equal = len(c.sets) == 0
	r.Changes = group(r.deleted, r.added, func(rr dns.RR) string {
		_, s, _ := c.canonical(rr) // it packed before
		_, held := slices.BinarySearch(c.heldSets, s)
		_, primary := slices.BinarySearch(c.primarySets, s)
		switch {
		case held && primary:
			return "~"
		case primary:
			return "+"
		}
		return "-"
	})
	c.held, c.heldSets, c.primarySets, c.seen = nil, nil, nil, nil
}

type setKey struct {
	owner string // lowercased
	rtype uint16
}

// group sorts the differing records into RRsets, by owner then type.
func group(deleted, added []dns.RR, op func(dns.RR) string) []RRset {
	sets := map[setKey]*RRset{}
	get := func(rr dns.RR) *RRset {
		k := setKey{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		if sets[k] == nil {
			sets[k] = &RRset{Op: op(rr), Owner: k.owner, Type: dns.Type(k.rtype).String()}
		}
		return sets[k]
	}
	for _, rr := range deleted {
		s := get(rr)
		s.Deleted = append(s.Deleted, backend.Presentation(rr))
	}
	for _, rr := range added {
		s := get(rr)
		s.Added = append(s.Added, backend.Presentation(rr))
	}
	keys := make([]setKey, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.owner != b.owner {
			return a.owner < b.owner
		}
		return a.rtype < b.rtype
	})
	out := make([]RRset, 0, len(keys))
	for _, k := range keys {
		s := sets[k]
		sort.Strings(s.Deleted)
		sort.Strings(s.Added)
		out = append(out, *s)
	}
	return out
}

// Summary is the one-line count: "3 to add, 1 to delete, 2 to change".
func (r *Result) Summary() string {
	if r.Equal {
		return fmt.Sprintf("no difference (%d records, serial %d)", r.PrimaryRecords, r.PrimarySerial)
	}
	return fmt.Sprintf("%d to add, %d to delete, %d to change", r.Add, r.Delete, r.Change)
}

// Print writes the difference per RRset: a "+", "-" or "~" line naming owner and type,
// then the records to delete ("-") and to add ("+"), then the summary.
func (r *Result) Print(w io.Writer) {
	for _, s := range r.Changes {
		fmt.Fprintf(w, "%s %s %s\n", s.Op, s.Owner, s.Type)
		for _, rr := range s.Deleted {
			fmt.Fprintf(w, "    - %s\n", rr)
		}
		for _, rr := range s.Added {
			fmt.Fprintf(w, "    + %s\n", rr)
		}
	}
	if r.Truncated > 0 {
		fmt.Fprintf(w, "... and %d more differing records not shown\n", r.Truncated)
	}
	fmt.Fprintln(w, r.Summary())
}

// ChangeSet is the difference as one step from the held version to the primary's, for
// backend.Incremental; nil when records were left out (Truncated), as it would be
// incomplete.
func (r *Result) ChangeSet() *backend.ChangeSet {
	if r.Truncated > 0 {
		return nil
	}
	step := backend.Step{Old: r.heldSOA, New: r.primarySOA}
	for _, rr := range r.deleted {
		if rr.Header().Rrtype != dns.TypeSOA {
			step.Deleted = append(step.Deleted, rr)
		}
	}
	for _, rr := range r.added {
		if rr.Header().Rrtype != dns.TypeSOA {
			step.Added = append(step.Added, rr)
		}
	}
	return &backend.ChangeSet{Zone: r.Zone, Steps: []backend.Step{step}}
}

// Records counts the differing records, those left out included.
func (r *Result) Records() int { return len(r.deleted) + len(r.added) + r.Truncated }

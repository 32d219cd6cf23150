package backend

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ErrInconsistent is returned (wrapped) by Apply when a change set does not fit the stored
// zone: its first step starts at another serial, or it deletes a record that is not there.
// The engine then falls back to a full transfer.
var ErrInconsistent = errors.New("change set does not match the stored zone")

// Step is one version step of an incremental transfer (RFC 1995 §4): the records deleted
// from version Old and those added to reach version New. The SOAs are not in Deleted or
// Added; applying the step replaces Old with New. In a spooled change set (Spool) the
// records are on disk, not in Deleted and Added: read them with ChangeSet.Records.
type Step struct {
	Old, New *dns.SOA
	Deleted  []dns.RR
	Added    []dns.RR

	spooledDeleted, spooledAdded int // records of the step in the spool
}

// ChangeSet is a whole incremental transfer: consecutive steps, each starting at the
// serial the previous one ended with. It is built in memory (Steps), or record by record
// with StartStep and Append, which move the records to a spool file once the change set
// outgrows its memory budget (Spool): a million-record IXFR then costs disk, not memory.
type ChangeSet struct {
	Zone  string
	Steps []Step

	spoolDir string // where to spill; "": os.TempDir
	budget   int    // records held in memory before spilling; 0: never spill
	held     int    // records in memory
	spool    *spool // nil while everything is in memory
}

// Spool makes Append spill the change set's records to an unlinked temp file in dir
// ("": os.TempDir) once more than budget records are held in memory. Call Close to
// release the file; the system frees its space by itself should the process die.
func (c *ChangeSet) Spool(dir string, budget int) {
	c.spoolDir, c.budget = dir, budget
}

// StartStep begins a new step at version old.
func (c *ChangeSet) StartStep(old *dns.SOA) {
	c.Steps = append(c.Steps, Step{Old: old})
}

// Append adds a record to the last step: to its deletions, or to its additions.
func (c *ChangeSet) Append(rr dns.RR, added bool) error {
	if c.spool == nil && c.budget > 0 && c.held >= c.budget {
		if err := c.spill(); err != nil {
			return err
		}
	}
	step := &c.Steps[len(c.Steps)-1]
	switch {
	case c.spool != nil:
		if err := c.spool.write(rr); err != nil {
			return fmt.Errorf("spooling the change set: %w", err)
		}
		if added {
			step.spooledAdded++
		} else {
			step.spooledDeleted++
		}
		return nil
	case added:
		step.Added = append(step.Added, rr)
	default:
		step.Deleted = append(step.Deleted, rr)
	}
	c.held++
	return nil
}

// spill moves the records held in memory to a new spool, in order.
func (c *ChangeSet) spill() error {
	sp, err := newSpool(c.spoolDir)
	if err != nil {
		return fmt.Errorf("spooling the change set: %w", err)
	}
	for i := range c.Steps {
		s := &c.Steps[i]
		for _, rr := range slices.Concat(s.Deleted, s.Added) {
			if err := sp.write(rr); err != nil {
				sp.close()
				return fmt.Errorf("spooling the change set: %w", err)
			}
		}
		s.spooledDeleted, s.spooledAdded = len(s.Deleted), len(s.Added)
		s.Deleted, s.Added = nil, nil
	}
	c.spool, c.held = sp, 0
	return nil
}

// Copy returns a deep copy, for a consumer that may change its records. A spooled change
// set shares its spool, read only (every Records call decodes fresh records); only the
// original's Close releases it.
func (c *ChangeSet) Copy() *ChangeSet {
	out := &ChangeSet{Zone: c.Zone, Steps: make([]Step, len(c.Steps))}
	copyAll := func(rrs []dns.RR) []dns.RR {
		if rrs == nil {
			return nil
		}
		cp := make([]dns.RR, len(rrs))
		for i, rr := range rrs {
			cp[i] = dns.Copy(rr)
		}
		return cp
	}
	for i, s := range c.Steps {
		out.Steps[i] = Step{Old: dns.Copy(s.Old).(*dns.SOA), New: dns.Copy(s.New).(*dns.SOA), Deleted: copyAll(s.Deleted),
			Added: copyAll(s.Added), spooledDeleted: s.spooledDeleted, spooledAdded: s.spooledAdded}
	}
	if c.spool != nil {
		c.spool.w.Flush() //nolint:errcheck // a failed flush shows in the next read
		out.spool = &spool{f: c.spool.f, w: c.spool.w, size: c.spool.size, shared: true}
	}
	return out
}

// Spooled reports whether the records are on disk.
func (c *ChangeSet) Spooled() bool { return c.spool != nil }

// Close releases the spool, if any.
func (c *ChangeSet) Close() error {
	if c.spool == nil {
		return nil
	}
	err := c.spool.close()
	c.spool = nil
	return err
}

// Records calls fn for every record in order: step by step, its deletions, then its
// additions. A spooled change set is read back from disk, one record at a time.
func (c *ChangeSet) Records(fn func(step int, added bool, rr dns.RR) error) error {
	return c.records(nil, fn)
}

// records is Records for the records want accepts (by their index in Records' order and
// whether they are added; nil: all). The others are passed over without being unpacked:
// each unpacked record is a few allocations, and 500,000 of them unpacked for nothing are
// a burst of 150 MB of garbage.
func (c *ChangeSet) records(want func(n int, added bool) bool, fn func(step int, added bool, rr dns.RR) error) error {
	if c.spool == nil {
		n := 0
		for i, s := range c.Steps {
			for j, rr := range slices.Concat(s.Deleted, s.Added) {
				added := j >= len(s.Deleted)
				if n++; want != nil && !want(n-1, added) {
					continue
				}
				if err := fn(i, added, rr); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return c.spooled(want, func(r *spoolReader, step int, added bool) error {
		rr, err := r.next()
		if err != nil {
			return err
		}
		return fn(step, added, rr)
	})
}

// spooled walks a spooled change set in Records' order: fn reads each record want accepts
// from r, with its step and whether it is added; the others are skipped unread.
func (c *ChangeSet) spooled(want func(n int, added bool) bool, fn func(r *spoolReader, step int, added bool) error) error {
	r, err := c.spool.reader()
	if err != nil {
		return err
	}
	n := 0
	for i, s := range c.Steps {
		for j := range s.spooledDeleted + s.spooledAdded {
			added := j >= s.spooledDeleted
			if n++; want != nil && !want(n-1, added) {
				if err := r.skip(); err != nil {
					return err
				}
				continue
			}
			if err := fn(r, i, added); err != nil {
				return err
			}
		}
	}
	return nil
}

// lines calls fn for the Presentation line of every record want accepts (as records'),
// in Records' order, with whether it is added; the line is valid until fn returns. A
// spooled record is not unpacked: its line is read from the spool. scratch is for records
// held in memory.
func (c *ChangeSet) lines(scratch *[]byte, want func(n int, added bool) bool, fn func(added bool, line []byte) error) error {
	if c.spool == nil {
		return c.records(want, func(_ int, added bool, rr dns.RR) error {
			*scratch = AppendPresentation((*scratch)[:0], rr)
			return fn(added, *scratch)
		})
	}
	return c.spooled(want, func(r *spoolReader, _ int, added bool) error {
		line, err := r.nextLine()
		if err != nil {
			return err
		}
		return fn(added, line)
	})
}

// InMemory returns the change set with every record in Deleted and Added: c itself unless
// it is spooled. For backends whose apply holds the whole change anyway.
func (c *ChangeSet) InMemory() (*ChangeSet, error) {
	if c.spool == nil {
		return c, nil
	}
	out := &ChangeSet{Zone: c.Zone, Steps: make([]Step, len(c.Steps))}
	for i, s := range c.Steps {
		out.Steps[i] = Step{Old: s.Old, New: s.New}
	}
	err := c.Records(func(i int, added bool, rr dns.RR) error {
		if added {
			out.Steps[i].Added = append(out.Steps[i].Added, rr)
		} else {
			out.Steps[i].Deleted = append(out.Steps[i].Deleted, rr)
		}
		return nil
	})
	return out, err
}

// From is the serial the change set applies to; To the serial it produces.
func (c *ChangeSet) From() uint32 { return c.Steps[0].Old.Serial }

// To is the serial after the last step.
func (c *ChangeSet) To() uint32 { return c.Steps[len(c.Steps)-1].New.Serial }

// Size counts the records deleted and added over all steps.
func (c *ChangeSet) Size() (deleted, added int) {
	for _, s := range c.Steps {
		deleted += len(s.Deleted) + s.spooledDeleted
		added += len(s.Added) + s.spooledAdded
	}
	return deleted, added
}

// String prints the change set the way a dry run or a debug log shows it.
func (c *ChangeSet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "; change set for %s: %d step(s)\n", c.Zone, len(c.Steps))
	last := -1
	err := c.Records(func(i int, added bool, rr dns.RR) error {
		if i != last {
			fmt.Fprintf(&b, "; serial %d -> %d\n", c.Steps[i].Old.Serial, c.Steps[i].New.Serial)
			last = i
		}
		sign := "-"
		if added {
			sign = "+"
		}
		fmt.Fprintf(&b, "%s %s\n", sign, rr)
		return nil
	})
	if err != nil {
		fmt.Fprintf(&b, "; %v\n", err)
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
	key, _ := keyAndOwner(rr)
	return key
}

// keyAndOwner returns Key(rr) and the owner field of its key (lowercased): what
// Patcher.Touches compares a stored line's first field with.
func keyAndOwner(rr dns.RR) (key, owner string) {
	line := Presentation(rr)
	key, ok := KeyOfLine(line)
	if !ok {
		return line, ""
	}
	return key, strings.ToLower(line[:strings.IndexByte(line, '\t')])
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
// stream its old copy through it: Keep says which stored records stay, EachAdded gives
// what to write after them, SOA is the new SOA, and Err reports a change set that did not
// fit. Its memory is one 64-bit hash of a key per net change and a few bits per record,
// whatever the size of the records, and the records to add are read again from the change
// set (from disk when it is spooled). Keys are hashed with a random seed per Patcher: two
// keys of one apply collide with probability about n²/2⁶⁴, and a primary cannot aim for it.
type Patcher struct {
	cs      *ChangeSet
	seed    maphash.Seed
	from    uint32
	soa     *dns.SOA
	deleted []uint64 // sorted: keys whose net change removes the stored record
	seen    bitset   // by index in deleted: the stored record was met
	ifHeld  bitset   // by index in deleted: added first, then deleted: removed if held, no error if not
	present []uint64 // sorted: keys the change set leaves in the zone (it writes their record)
	write   bitset   // by record index in cs.Records: an addition to write
	owners  []uint64 // sorted: the owners of the records changed (Touches); nil when too many
	lower   []byte   // Touches' scratch
	line    []byte   // hashRR's scratch
	key     []byte   // hashLine's scratch
	err     error    // reading the change set failed
}

// Patcher folds the steps into their net effect. A record added by one step and deleted by
// a later one is not written, and removed only if the zone held it before (adding a record
// held already changes nothing, RFC 2181 §5); one deleted and then added again (a TTL
// change) is replaced.
func (c *ChangeSet) Patcher() *Patcher {
	p := &Patcher{cs: c, seed: maphash.MakeSeed(), from: c.From(), soa: c.Steps[len(c.Steps)-1].New}
	d, a := c.Size()
	// A key is in deleted only if the change set deletes it, in present only if it adds it.
	p.deleted, p.present = make([]uint64, 0, d), make([]uint64, 0, a)
	p.ifHeld, p.write = newBitset(d), newBitset(d+a)
	p.err = p.sortedChanges(d+a, p.fold)
	p.seen = newBitset(len(p.deleted))
	return p
}

// change is one record of the change set: the hash of its key, and its position<<1 | 1 if
// it is added. Sorted, a key's changes are together, in order.
type change struct {
	h uint64
	v uint32
}

// fold takes sorted changes, a key's all together, and records each key's net effect.
func (p *Patcher) fold(changes []change) {
	for i := 0; i < len(changes); {
		j := i + 1
		for j < len(changes) && changes[j].h == changes[i].h {
			j++
		}
		first, last := changes[i].v, changes[j-1].v
		switch {
		case first&1 == 0:
			p.deleted = append(p.deleted, changes[i].h)
		case last&1 == 0:
			p.ifHeld.set(len(p.deleted))
			p.deleted = append(p.deleted, changes[i].h)
		}
		if last&1 == 1 {
			p.present = append(p.present, changes[i].h)
			p.write.set(int(last >> 1))
		}
		i = j
	}
}

// sortedChanges reads the change set's total records and calls fold with their changes
// sorted by hash, in runs of ascending hashes. Those of a spooled change set are sorted
// outside memory (its budget is the point of spooling, and the table costs 16 bytes a
// record): they are partitioned into unlinked files by the top bits of their hash, each
// then read back and sorted alone, so only one partition's table is ever in memory.
func (p *Patcher) sortedChanges(total int, fold func([]change)) error {
	bits := 0
	for p.cs.spool != nil && total>>bits > sortPartition && bits < maxPartitionBits {
		bits++
	}
	var table []change
	var parts []*changeFile
	if bits == 0 {
		table = make([]change, 0, total)
	} else {
		defer func() {
			for _, f := range parts {
				f.close()
			}
		}()
		for range 1 << bits {
			f, err := newChangeFile(p.cs.spoolDir)
			if err != nil {
				return fmt.Errorf("sorting the change set: %w", err)
			}
			parts = append(parts, f)
		}
	}
	if total <= maxOwners {
		p.owners = make([]uint64, 0, total)
	}
	n := uint32(0)
	err := p.cs.lines(&p.line, nil, func(added bool, line []byte) error {
		key, owner := p.hashLine(line)
		if p.owners != nil {
			p.owners = append(p.owners, owner)
		}
		ch := change{key, n << 1}
		if added {
			ch.v |= 1
		}
		n++
		if bits == 0 {
			table = append(table, ch)
			return nil
		}
		return parts[ch.h>>(64-bits)].write(ch)
	})
	if err != nil {
		return err
	}
	slices.Sort(p.owners)
	p.owners = slices.Compact(p.owners)
	sortChanges := func(t []change) {
		slices.SortFunc(t, func(x, y change) int {
			if x.h != y.h {
				return cmp.Compare(x.h, y.h)
			}
			return cmp.Compare(x.v, y.v)
		})
	}
	if bits == 0 {
		sortChanges(table)
		fold(table)
		return nil
	}
	for _, f := range parts {
		if table, err = f.readAll(table[:0]); err != nil {
			return fmt.Errorf("sorting the change set: %w", err)
		}
		sortChanges(table)
		fold(table)
	}
	return nil
}

// maxOwners is the largest change set whose owners Touches knows: 8 bytes each, as many as
// an in-memory sort of the changes takes anyway. A larger one touches every line.
const maxOwners = 1 << 16

// sortPartition is about how many changes of a spooled change set are sorted in memory at
// once (16 bytes each), up to 2^maxPartitionBits partitions; a variable for the tests.
var sortPartition = 1 << 16

const maxPartitionBits = 6

// bitset is a set of small integers, one bit each.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

func (p *Patcher) hash(key string) uint64 { return maphash.String(p.seed, key) }

// Start checks the stored zone's SOA: the change set must start at its serial.
func (p *Patcher) Start(stored *dns.SOA) error {
	if p.err != nil {
		return p.err
	}
	if stored.Serial != p.from {
		return fmt.Errorf("%w: it starts at serial %d, the zone is at %d", ErrInconsistent, p.from, stored.Serial)
	}
	return nil
}

// hashRR is hash(Key(rr)), and the hash of the key's owner field (Touches), computed in
// p's scratch buffers: 1M records hashed one Key string each allocated about 200 MB in a
// few seconds, and a burst like that, met by a GC starved of CPU on a loaded machine,
// doubled the agent's RSS (issue 14). Not safe for concurrent use, as Touches.
func (p *Patcher) hashRR(rr dns.RR) (key, owner uint64) {
	p.line = AppendPresentation(p.line[:0], rr)
	return p.hashLine(p.line)
}

// hashLine is hash(KeyOfLine(line)) and the hash of its lowercased owner, without
// building the key; for a line of another shape, keyAndOwner's: the line and "".
func (p *Patcher) hashLine(line []byte) (key, owner uint64) {
	var tabs [4]int
	at := 0
	for i := range tabs {
		t := bytes.IndexByte(line[at:], '\t')
		if t < 0 || (i == 0 && t == 0) {
			return maphash.Bytes(p.seed, line), maphash.String(p.seed, "")
		}
		tabs[i], at = at+t, at+t+1
	}
	var ascii bool
	if p.key, ascii = appendLowerASCII(p.key[:0], line[:tabs[0]]); !ascii {
		p.key = append(p.key[:0], strings.ToLower(string(line[:tabs[0]]))...)
	}
	owner = maphash.Bytes(p.seed, p.key)
	// KeyOfLine's owner, class, type and data, space-separated (the TTL left out).
	p.key = append(p.key, ' ')
	p.key = append(p.key, line[tabs[1]+1:tabs[2]]...)
	p.key = append(p.key, ' ')
	p.key = append(p.key, line[tabs[2]+1:tabs[3]]...)
	p.key = append(p.key, ' ')
	p.key = append(p.key, line[tabs[3]+1:]...)
	return maphash.Bytes(p.seed, p.key), owner
}

// Keep reports whether a stored record (not the SOA) stays as it is.
func (p *Patcher) Keep(rr dns.RR) bool {
	key, _ := p.hashRR(rr)
	return p.keepHash(key)
}

// KeepKey is Keep for the record whose Key is k.
func (p *Patcher) KeepKey(k string) bool { return p.keepHash(p.hash(k)) }

// KeepLine is Keep for the record whose presentation (Presentation) is line; it does not
// allocate.
func (p *Patcher) KeepLine(line []byte) bool {
	key, _ := p.hashLine(line)
	return p.keepHash(key)
}

func (p *Patcher) keepHash(h uint64) bool {
	if i, ok := slices.BinarySearch(p.deleted, h); ok {
		p.seen.set(i)
		return false
	}
	_, replaced := slices.BinarySearch(p.present, h)
	return !replaced
}

// Touches reports whether the change set may change a stored line (as Presentation writes
// it) whose first field, the owner, is owner. A line it does not touch is kept: its key
// need not be computed, which is most of the cost of streaming a big zone through Keep.
func (p *Patcher) Touches(owner []byte) bool {
	if p.owners == nil {
		return true // too many to know
	}
	// KeyOfLine lowercases the owner with strings.ToLower; for ASCII (all Presentation
	// writes) this is the same, without allocating.
	var ascii bool
	if p.lower, ascii = appendLowerASCII(p.lower[:0], owner); !ascii {
		p.lower = append(p.lower[:0], strings.ToLower(string(owner))...)
	}
	_, ok := slices.BinarySearch(p.owners, maphash.Bytes(p.seed, p.lower))
	return ok
}

// appendLowerASCII appends src with 'A'..'Z' lowercased, eight bytes at a time; ascii is
// false if src has a byte over 0x7f (then dst is not finished).
func appendLowerASCII(dst, src []byte) (_ []byte, ascii bool) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(src) >= 8 {
		w := binary.LittleEndian.Uint64(src)
		if w&highs != 0 {
			return dst, false
		}
		// A byte's top bit: set by +0x3f from 'A' up, by +0x25 above 'Z'; no byte carries.
		upper := (w + 0x3f*ones) &^ (w + 0x25*ones) & highs
		dst = binary.LittleEndian.AppendUint64(dst, w|upper>>2)
		src = src[8:]
	}
	for _, c := range src {
		if c > 0x7f {
			return dst, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// SOA is the zone's SOA after the change set.
func (p *Patcher) SOA() *dns.SOA { return p.soa }

// EachAdded calls fn for every record to write after the kept ones.
func (p *Patcher) EachAdded(fn func(dns.RR) error) error {
	if p.err != nil {
		return p.err
	}
	return p.cs.records(p.added, func(_ int, _ bool, rr dns.RR) error { return fn(rr) })
}

// EachAddedLine is EachAdded for a backend that writes Presentation lines: fn gets each
// record's line, valid until it returns; a spooled record is not unpacked.
func (p *Patcher) EachAddedLine(fn func(line []byte) error) error {
	if p.err != nil {
		return p.err
	}
	return p.cs.lines(&p.line, p.added, func(_ bool, line []byte) error { return fn(line) })
}

// added is a records filter: the additions to write.
func (p *Patcher) added(n int, added bool) bool { return added && p.write.has(n) }

// Added lists the records to write after the kept ones (EachAdded, in memory).
func (p *Patcher) Added() ([]dns.RR, error) {
	var out []dns.RR
	err := p.EachAdded(func(rr dns.RR) error {
		out = append(out, rr)
		return nil
	})
	return out, err
}

// Deleted lists the net deletions: the records the stored zone must hold, and those to
// remove only if it holds them. For a backend that deletes by record rather than streaming
// its copy through Keep.
func (p *Patcher) Deleted() (must, ifHeld []dns.RR, err error) {
	err = p.EachDeleted(func(rr dns.RR, held bool) error {
		if held {
			ifHeld = append(ifHeld, rr)
		} else {
			must = append(must, rr)
		}
		return nil
	})
	return must, ifHeld, err
}

// EachDeleted calls fn for every net deletion (Deleted, one at a time): ifHeld says the
// record is to be removed only if the zone holds it.
func (p *Patcher) EachDeleted(fn func(rr dns.RR, ifHeld bool) error) error {
	if p.err != nil {
		return p.err
	}
	listed := newBitset(len(p.deleted))
	return p.cs.records(deletions, func(_ int, _ bool, rr dns.RR) error {
		key, _ := p.hashRR(rr)
		i, ok := slices.BinarySearch(p.deleted, key)
		if !ok || listed.has(i) {
			return nil
		}
		listed.set(i)
		return fn(rr, p.ifHeld.has(i))
	})
}

// deletions is a records filter: the deleted records only.
func deletions(_ int, added bool) bool { return !added }

// Err reports deletions of records the zone did not hold, once every record went through Keep.
func (p *Patcher) Err() error {
	if p.err != nil {
		return p.err
	}
	missing := map[uint64]bool{}
	for i, h := range p.deleted {
		if !p.seen.has(i) && !p.ifHeld.has(i) {
			missing[h] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	// Name one of them: read the change set again for a deletion with that key.
	name := fmt.Sprintf("%d record(s)", len(missing))
	errFound := errors.New("found")
	err := p.cs.records(deletions, func(_ int, _ bool, rr dns.RR) error {
		if k := Key(rr); missing[p.hash(k)] {
			name = fmt.Sprintf("record %q", k)
			return errFound
		}
		return nil
	})
	if err != nil && err != errFound {
		return err
	}
	return fmt.Errorf("%w: deleted %s not in the zone", ErrInconsistent, name)
}

package zonediff

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cespare/xxhash/v2"
	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// DefaultMaxRatio is the share of a zone's records a difference may touch (deleted plus
// added, over the larger version) and still be applied as a difference rather than a full
// replace. Measured on the powerdns backend, the slowest per changed record: see README.
const DefaultMaxRatio = 0.3

// Index keeps the per-zone index files in one directory, owned by the agent.
type Index struct {
	dir      string
	maxRatio float64
}

// Open creates dir if needed, checks it is writable (Check) and removes the temp files of
// an interrupted run. maxRatio is diff_max_ratio.
func Open(dir string, maxRatio float64) (*Index, error) {
	idx, err := Check(dir, maxRatio)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(idx.dir)
	if err != nil {
		return nil, fmt.Errorf("diff index: %w", err)
	}
	for _, e := range entries {
		if isTemp(e.Name()) {
			os.Remove(filepath.Join(idx.dir, e.Name()))
		}
	}
	return idx, nil
}

// Check creates dir if needed and checks it is writable, leaving the temp files in it
// alone: dnsagent check-config, which may run beside an agent writing them.
func Check(dir string, maxRatio float64) (*Index, error) {
	if maxRatio < 0 || maxRatio > 1 {
		return nil, fmt.Errorf("diff_max_ratio %v: must be between 0 and 1", maxRatio)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("diff index %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("diff index: %w", err)
	}
	probe, err := os.CreateTemp(abs, ".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("diff_index_dir %s is not writable: %w", abs, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &Index{dir: abs, maxRatio: maxRatio}, nil
}

// At returns the index kept in dir for a command-line tool that only drops indexes
// (dnsagent resync): unlike Open it neither creates the directory nor sweeps temp files,
// which a running agent may be writing.
func At(dir string, maxRatio float64) *Index {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return &Index{dir: abs, maxRatio: maxRatio}
}

// Result says how a full zone was applied.
type Result struct {
	Apply   string // "create", "diff" or "replace"
	Reason  string // why a held zone was replaced instead of diffed
	Deleted int    // records deleted by a diff
	Added   int    // records added by a diff
	// IndexErr says why the new version's index could not be written (the zone was
	// applied all the same; its next full zone is a replace).
	IndexErr string
}

// Fingerprinter is the optional capability of a backend to tell cheaply whether a held
// zone changed since the agent last wrote it (the file's size and time, the row count):
// the index then no longer describes it and the next full zone is applied as a replace.
type Fingerprinter interface {
	Fingerprint(ctx context.Context, zone string) (string, error)
}

// SmallZoneReplacer is the optional capability of a backend whose replace of a small zone
// costs about what applying its difference does: the file backend writes the zone's
// whole file either way, powerdns rewrites a few rows in its one transaction either way.
// A zone of at most SmallZone records gets no index there, as a diff would save nothing,
// and the index's file was a second new file for each CREATE of a small zone (a fifth of
// the file backend's CPU in a burst of them, over a third of powerdns's; issue 15).
// Larger zones keep theirs, so their changes are still applied record by record. bind9
// indexes every zone: a difference is one UPDATE there, a replace an rndc run.
type SmallZoneReplacer interface {
	ReplacesSmallZones()
}

// SmallZone is the most records (besides the SOA) a zone of a SmallZoneReplacer may have
// and get no index.
const SmallZone = 100

// noIndexSmall is the reason a change of a zone without an index is a replace, in a
// SmallZoneReplacer. One string for all: every zone keeps its last transfer's reason
// (transfer's status), and one formatted per change would cost each of 100,000 small
// zones its own 176 bytes (172 of text, in the allocator's next size class).
var noIndexSmall = fmt.Sprintf("no index of the held version (at most %d records, which this backend replaces as cheaply "+
	"as it applies a difference; or the first transfer, or the last change was an IXFR)", SmallZone)

// errIndexWrite is a diff that failed because the new index file could not be written or
// read back.
var errIndexWrite = errors.New("diff index: the new version's index file failed")

// Drop forgets the index of zone: it no longer describes what the backend holds (the zone
// was deleted, or changed by an IXFR).
func (x *Index) Drop(zone string) {
	os.Remove(filepath.Join(x.dir, fileName(zone)))
}

// Full brings zone to the complete version src streams: a Create when the backend does not
// hold it (exists false), else the difference from the held version (at serial current)
// applied through backend.Incremental, or a Replace when there is no usable index, the
// difference is too large, or it does not fit what the backend holds. The index is
// rewritten after every success (none for a small zone of a SmallZoneReplacer; one that
// cannot be written is Result.IndexErr). On error the backend keeps its previous version.
func (x *Index) Full(ctx context.Context, b backend.Backend, zone string, exists bool, current uint32, src backend.Source) (Result, error) {
	w := newWriter(x.dir, zone)
	defer w.discard()
	if !exists {
		t := tee(w, src)
		// The records are indexed before the backend gives the transfer worker back
		// (backend.Committed); the index file is written once the zone is in place (its
		// fingerprint is the file's or the rows'), after the backend's wait.
		committed := func() {
			t.wait()
			backend.Committed(ctx)
		}
		err := b.Create(backend.WithCommitted(ctx, committed), zone, t)
		t.wait()
		if err != nil {
			return Result{}, err
		}
		return Result{Apply: "create", IndexErr: x.finish(ctx, b, w)}, nil
	}
	old, reason := x.usable(ctx, b, zone, current)
	if old == nil {
		return x.replace(ctx, b, w, src, reason)
	}
	defer old.close()
	in := readAhead(src)
	defer in.close()
	res, err := x.diff(ctx, b, w, old, in)
	if errors.Is(err, errIndexWrite) {
		// The diff needs the new index file, and this one cannot be written (a full disk,
		// a read-only remount): without the index the retry is a replace, which does not
		// need it. Kept, the index would fail every full zone of the zone for good.
		x.Drop(zone)
		return res, fmt.Errorf("%w; the index is dropped, so the next full zone is a replace without it", err)
	}
	if err != nil {
		return res, err
	}
	// The backend holds the new version: what remains is the new index, off the path of
	// the transfer. It lacks the held records the new version kept: copied now.
	if err := w.addKept(old); err != nil {
		w.err = err // no index: the next full zone is a replace
	}
	old.table, old.seen = nil, nil // memory for the new table
	if w.records() > 100_000 {
		runtime.GC() // the old table is garbage: let the new one take its place, not add to it
	}
	res.IndexErr = x.finish(ctx, b, w)
	return res, nil
}

// usable loads the index of zone if it describes what the backend holds; else it says why not.
func (x *Index) usable(ctx context.Context, b backend.Backend, zone string, current uint32) (*held, string) {
	if _, ok := b.(backend.Incremental); !ok {
		return nil, "the backend cannot apply changes in place"
	}
	old, err := load(filepath.Join(x.dir, fileName(zone)), zone)
	if errors.Is(err, fs.ErrNotExist) {
		if _, ok := b.(SmallZoneReplacer); ok {
			return nil, noIndexSmall
		}
		return nil, "no index of the held version (first transfer, or the last change was an IXFR)"
	}
	if err != nil {
		return nil, "index unreadable: " + err.Error()
	}
	if old.soa.Serial != current {
		old.close()
		return nil, fmt.Sprintf("index is of serial %d, the backend holds %d", old.soa.Serial, current)
	}
	if fp, ok := b.(Fingerprinter); ok {
		now, err := fp.Fingerprint(ctx, zone)
		if err != nil || now != old.t.Fingerprint {
			old.close()
			if err != nil {
				return nil, "reading the held zone's fingerprint: " + err.Error()
			}
			return nil, fmt.Sprintf("the held zone changed behind the agent's back (%s, index says %s)", now, old.t.Fingerprint)
		}
	}
	return old, ""
}

// diff reads the new zone, comparing each record with the held version's table, and
// applies the difference, or replaces the zone when the difference is not worth it. What
// it holds in memory is the held version's table and 12 bytes per added record. Only the
// records the held version lacks are written to the new index file while the zone
// streams: those the held version has are marked in its table, and Full copies them from
// the held index once the backend has the new version. The records of the difference are
// read back from the two index files into a change set that spills to disk beyond
// changeSetMemory records.
func (x *Index) diff(ctx context.Context, b backend.Backend, w *writer, old *held, src backend.Source) (Result, error) {
	var addedHashes []uint64 // new records the held version lacks, maybe repeated
	var addedOffs []uint32
	limit := int(x.maxRatio*float64(old.size())) + 1
	var packed []byte   // the batch's records, each behind its 2-byte length
	var hashes []uint64 // their hashes
	var found []int     // their positions in the held table, -1 when not there
	soa, err := backend.StreamCheck{Zone: w.zone}.Read(ctx, src, func(batch []dns.RR) error {
		packed, hashes = packed[:0], hashes[:0]
		for _, rr := range batch {
			if _, ok := rr.(*dns.SOA); ok && w.soa == nil {
				w.soa = rr.(*dns.SOA)
				continue
			}
			start := len(packed)
			var err error
			if packed, err = appendPacked(packed, rr); err != nil {
				return err
			}
			hashes = append(hashes, xxhash.Sum64(packed[start+2:]))
		}
		// All the batch's lookups at once: for a big zone each is likely a cache miss, and
		// a loop of nothing else lets the processor overlap them.
		found = old.table.findAll(hashes, found[:0])
		for k, off := 0, 0; k < len(hashes); k++ {
			n := int(packed[off])<<8 | int(packed[off+1])
			wire := packed[off+2 : off+2+n]
			off += 2 + n
			if i := found[k]; i >= 0 {
				old.mark(i) // repeated or not, one RR (RFC 2181 §5)
				continue
			}
			if len(addedHashes) <= limit {
				addedHashes, addedOffs = append(addedHashes, hashes[k]), append(addedOffs, uint32(w.off))
			}
			if err := w.add(wire, hashes[k]); err != nil {
				return fmt.Errorf("%w: %w", errIndexWrite, err)
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	added := sorted(addedHashes, addedOffs) // duplicates dropped
	deleted, adding := old.unseenCount(), len(added.hashes)
	size := max(old.size(), old.size()-deleted+adding)
	if len(addedHashes) > limit || float64(deleted+adding) > x.maxRatio*float64(size) {
		return x.replayReplace(ctx, b, w, old, fmt.Sprintf("the difference (%d deleted, %d or more added) is over diff_max_ratio %.2f of %d records",
			deleted, adding, x.maxRatio, size))
	}
	cs, err := x.changeSet(w, old, soa, added.offs)
	if err != nil {
		return x.replayReplace(ctx, b, w, old, err.Error())
	}
	defer cs.Close()
	err = b.(backend.Incremental).Apply(ctx, w.zone, cs)
	if errors.Is(err, backend.ErrInconsistent) {
		return x.replayReplace(ctx, b, w, old, "the difference does not fit the held zone: "+err.Error())
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Apply: "diff", Deleted: deleted, Added: adding}, nil
}

// changeSetMemory is how many records of a difference are held in memory before the
// change set spills to disk.
const changeSetMemory = 20000

// changeSet reads the difference back: the held records never seen from the old index,
// the added ones from the new index file (at addedOffs).
func (x *Index) changeSet(w *writer, old *held, soa *dns.SOA, addedOffs []uint32) (*backend.ChangeSet, error) {
	cs := &backend.ChangeSet{Zone: w.zone}
	cs.Spool(x.dir, changeSetMemory)
	cs.StartStep(old.soa)
	cs.Steps[0].New = soa
	err := old.eachUnseen(func(rr dns.RR) error { return cs.Append(rr, false) })
	if err == nil {
		err = w.flush()
	}
	r := recordReader{f: w.f}
	for _, off := range addedOffs {
		if err != nil {
			break
		}
		var rr dns.RR
		if rr, err = r.at(int64(off)); err == nil {
			err = cs.Append(rr, true)
		}
	}
	if err != nil {
		cs.Close()
		return nil, fmt.Errorf("reading the difference back from the index: %w", err)
	}
	return cs, nil
}

// replayReplace replaces the zone with the new version read back from the index files:
// the records the held version lacks from the new one, the others from the held one.
func (x *Index) replayReplace(ctx context.Context, b backend.Backend, w *writer, old *held, reason string) (Result, error) {
	r, err := w.replay(old)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", errIndexWrite, err)
	}
	defer r.Close()
	if err := b.Replace(ctx, w.zone, r); err != nil {
		return Result{}, err
	}
	return Result{Apply: "replace", Reason: reason}, nil
}

func (x *Index) replace(ctx context.Context, b backend.Backend, w *writer, src backend.Source, reason string) (Result, error) {
	t := tee(w, src)
	err := b.Replace(ctx, w.zone, t)
	t.wait()
	if err != nil {
		return Result{}, err
	}
	return Result{Apply: "replace", Reason: reason, IndexErr: x.finish(ctx, b, w)}, nil
}

// finish writes the new index once the backend holds the new version. Failing to write
// it costs the next transfer a replace, never correctness, so the old one is dropped first
// and a failure is only reported: it returns why no index was written, or "".
func (x *Index) finish(ctx context.Context, b backend.Backend, w *writer) string {
	x.Drop(w.zone)
	if _, ok := b.(SmallZoneReplacer); ok && w.records() <= SmallZone {
		return ""
	}
	fingerprint := ""
	if fp, ok := b.(Fingerprinter); ok {
		var err error
		if fingerprint, err = fp.Fingerprint(ctx, w.zone); err != nil {
			return notWritten(err)
		}
	}
	if err := w.finish(fingerprint); err != nil {
		return notWritten(err)
	}
	return ""
}

func notWritten(err error) string {
	return fmt.Sprintf("not written (%v); the next full zone is a replace", err)
}

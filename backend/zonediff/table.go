package zonediff

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/bits"
	"os"
	"slices"
)

// table is a set of record hashes, each with the offset of its record in the records
// section, sorted by hash. Hashes are uniform, so the top bits of a hash give its bucket,
// and a lookup reads one bucket of about 8 entries instead of a binary search's ~20
// scattered reads. Parallel arrays keep it at 12 bytes a record.
type table struct {
	hashes []uint64
	offs   []uint32
	shift  uint     // bucket of a hash: hash >> shift
	start  []uint32 // bucket b holds positions start[b] .. start[b+1]-1
}

// bucketShift gives about 8 entries a bucket.
func bucketShift(n int) uint {
	b := bits.Len(uint(n / 8))
	return uint(64 - min(b, 24))
}

// index computes the bucket starts of sorted hashes.
func (t *table) index() {
	t.shift = bucketShift(len(t.hashes))
	t.start = make([]uint32, (1<<(64-t.shift))+1)
	for _, h := range t.hashes {
		t.start[(h>>t.shift)+1]++
	}
	for b := 1; b < len(t.start); b++ {
		t.start[b] += t.start[b-1]
	}
}

// find returns the position of hash, or -1.
func (t *table) find(hash uint64) int {
	b := hash >> t.shift
	for i := t.start[b]; i < t.start[b+1]; i++ {
		if t.hashes[i] == hash {
			return int(i)
		}
	}
	return -1
}

// findAll appends the position of each hash (find) to out.
func (t *table) findAll(hashes []uint64, out []int) []int {
	for _, h := range hashes {
		out = append(out, t.find(h))
	}
	return out
}

// sorted returns the entries sorted by hash without duplicates: a counting sort on the
// bucket bits, then each small bucket sorted in place.
func sorted(hashes []uint64, offs []uint32) *table {
	t := &table{hashes: make([]uint64, len(hashes)), offs: make([]uint32, len(offs))}
	t.shift = bucketShift(len(hashes))
	next := make([]uint32, (1<<(64-t.shift))+1)
	for _, h := range hashes {
		next[(h>>t.shift)+1]++
	}
	for b := 1; b < len(next); b++ {
		next[b] += next[b-1]
	}
	for i, h := range hashes {
		b := h >> t.shift
		t.hashes[next[b]], t.offs[next[b]] = h, offs[i]
		next[b]++
	}
	t.sortBuckets(next)
	return t
}

// sortBuckets finishes a counting sort: end[b] is where bucket b ends. Each bucket is
// sorted in place, duplicates dropped and the lookup index built.
func (t *table) sortBuckets(end []uint32) {
	lo := uint32(0)
	for b := 0; b+1 < len(end); b++ {
		hi := end[b]
		insertionSort(t.hashes[lo:hi], t.offs[lo:hi])
		lo = hi
	}
	t.dedupe()
	t.index()
}

func insertionSort(h []uint64, o []uint32) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j] < h[j-1]; j-- {
			h[j], h[j-1] = h[j-1], h[j]
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
}

// dedupe drops repeated hashes, keeping the first record: duplicates are one RR (RFC 2181 §5).
func (t *table) dedupe() {
	if len(t.hashes) < 2 {
		return
	}
	n := 1
	for i := 1; i < len(t.hashes); i++ {
		if t.hashes[i] != t.hashes[n-1] {
			t.hashes[n], t.offs[n] = t.hashes[i], t.offs[i]
			n++
		}
	}
	t.hashes, t.offs = slices.Clip(t.hashes[:n]), slices.Clip(t.offs[:n])
}

// entryLog collects a table's entries while a zone streams, so the memory of a transfer
// does not grow with the zone: the first memEntries stay in memory (a small zone, the
// common case, costs no file), the rest go to an unlinked temp file. The table is built
// once, sorted, when the zone is complete.
type entryLog struct {
	dir string
	mem []byte // the first entries, entrySize bytes each
	f   *os.File
	w   *bufio.Writer
	n   int
}

// memEntries is how many entries stay in memory: 48 KiB.
const memEntries = 4096

func newEntryLog(dir string) *entryLog { return &entryLog{dir: dir} }

func (l *entryLog) add(hash uint64, off uint32) error {
	var e [entrySize]byte
	binary.BigEndian.PutUint64(e[:], hash)
	binary.BigEndian.PutUint32(e[8:], off)
	l.n++
	if l.f == nil && len(l.mem) < memEntries*entrySize {
		l.mem = append(l.mem, e[:]...)
		return nil
	}
	if l.f == nil {
		f, err := os.CreateTemp(l.dir, ".tmp-*")
		if err != nil {
			return err
		}
		os.Remove(f.Name()) // the space is freed when f is closed, also should the agent die
		l.f, l.w = f, bufio.NewWriterSize(f, 64<<10)
	}
	_, err := l.w.Write(e[:])
	return err
}

// each reads the entries back in order.
func (l *entryLog) each(fn func(hash uint64, off uint32)) error {
	in := io.Reader(bytes.NewReader(l.mem))
	if l.f != nil {
		if err := l.w.Flush(); err != nil {
			return err
		}
		spilled := int64(l.n)*entrySize - int64(len(l.mem))
		in = io.MultiReader(in, bufio.NewReaderSize(io.NewSectionReader(l.f, 0, spilled), 64<<10))
	}
	var e [entrySize]byte
	for range l.n {
		if _, err := io.ReadFull(in, e[:]); err != nil {
			return err
		}
		fn(binary.BigEndian.Uint64(e[:]), binary.BigEndian.Uint32(e[8:]))
	}
	return nil
}

// table sorts the entries into a table (a counting sort on the bucket bits, reading the
// log twice), without duplicates.
func (l *entryLog) table() (*table, error) {
	t := &table{hashes: make([]uint64, l.n), offs: make([]uint32, l.n), shift: bucketShift(l.n)}
	next := make([]uint32, (1<<(64-t.shift))+1)
	if err := l.each(func(h uint64, _ uint32) { next[(h>>t.shift)+1]++ }); err != nil {
		return nil, err
	}
	for b := 1; b < len(next); b++ {
		next[b] += next[b-1]
	}
	err := l.each(func(h uint64, off uint32) {
		b := h >> t.shift
		t.hashes[next[b]], t.offs[next[b]] = h, off
		next[b]++
	})
	if err != nil {
		return nil, err
	}
	t.sortBuckets(next)
	return t, nil
}

func (l *entryLog) close() {
	if l.f != nil {
		l.f.Close()
	}
}

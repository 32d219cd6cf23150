package zonediff

import (
	"math/bits"
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
	// next[b] is now where bucket b ends, i.e. where bucket b+1 starts.
	lo := uint32(0)
	for b := 0; b+1 < len(next); b++ {
		hi := next[b]
		insertionSort(t.hashes[lo:hi], t.offs[lo:hi])
		lo = hi
	}
	t.dedupe()
	t.index()
	return t
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

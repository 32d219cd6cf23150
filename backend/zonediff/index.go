// Package zonediff applies a full zone transfer for a zone the backend already holds as its
// difference from the held version, so a primary that always sends the whole zone
// (Designate's MiniDNS, NSD, any primary without a journal) costs the backend only what
// changed. It keeps one compact index file per zone, written by the agent after every full
// apply: the zone's records in canonical wire form, and a table of their 64-bit hashes
// sorted for lookup. Neither version of the zone is ever held whole in Go
// objects: a 1M-record zone costs 16 bytes a record of table while it is diffed.
package zonediff

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// magic ends every index file; the trailer before it says what the file holds.
const magic = "DNSAGIX1"

// trailer describes an index file. It is written last, so a file cut short has none.
type trailer struct {
	Zone        string `json:"zone"`
	SOA         string `json:"soa"`         // the zone's SOA at this version, presentation form
	Records     int    `json:"records"`     // unique records, the SOA left out
	TableOffset int64  `json:"table"`       // where the table starts: the sorted hashes, then the offsets
	TableSum    uint64 `json:"table_sum"`   // xxhash of the table bytes
	Fingerprint string `json:"fingerprint"` // the backend's Fingerprint after the apply, if it has one
}

// held is a loaded index: the table in memory, the records read from the file on demand.
type held struct {
	f     *os.File
	soa   *dns.SOA
	t     trailer
	table *table
	seen  []uint64 // one bit per table entry: the new zone holds the record
}

func (h *held) close() { h.f.Close() }

func (h *held) find(hash uint64) int { return h.table.find(hash) }

func (h *held) size() int { return len(h.table.hashes) }

// mark records that the new zone holds table entry i; it reports whether it already did.
func (h *held) mark(i int) (already bool) {
	word, bit := i/64, uint64(1)<<(i%64)
	already = h.seen[word]&bit != 0
	h.seen[word] |= bit
	return already
}

// eachUnseen calls fn with each record of the held version the new zone does not hold.
func (h *held) eachUnseen(fn func(dns.RR) error) error {
	r := recordReader{f: h.f}
	for i, off := range h.table.offs {
		if h.seen[i/64]&(uint64(1)<<(i%64)) != 0 {
			continue
		}
		rr, err := r.at(int64(off))
		if err != nil {
			return fmt.Errorf("index of %s: record at %d: %w", h.t.Zone, off, err)
		}
		if err := fn(rr); err != nil {
			return err
		}
	}
	return nil
}

func (h *held) unseenCount() int {
	n := h.size()
	for _, w := range h.seen {
		n -= popcount(w)
	}
	return n
}

func popcount(w uint64) int {
	n := 0
	for ; w != 0; w &= w - 1 {
		n++
	}
	return n
}

// fileName is the index file of zone: a hash of the name, as a zone name of 253
// characters plus a suffix would pass the 255-byte limit of a file name.
func fileName(zone string) string {
	return fmt.Sprintf("%016x.idx", xxhash.Sum64String(zone))
}

// load opens the index of zone and checks it is whole and for this zone.
func load(path, zone string) (*held, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := readIndex(f, zone)
	if err != nil {
		f.Close()
		return nil, err
	}
	return h, nil
}

func readIndex(f *os.File, zone string) (*held, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := info.Size()
	var end [4 + len(magic)]byte
	if size < int64(len(end)) {
		return nil, errors.New("index file cut short")
	}
	if _, err := f.ReadAt(end[:], size-int64(len(end))); err != nil {
		return nil, err
	}
	if string(end[4:]) != magic {
		return nil, errors.New("index file cut short or not an index")
	}
	tlen := int64(binary.BigEndian.Uint32(end[:4]))
	tstart := size - int64(len(end)) - tlen
	if tstart < 0 {
		return nil, errors.New("index trailer out of bounds")
	}
	raw := make([]byte, tlen)
	if _, err := f.ReadAt(raw, tstart); err != nil {
		return nil, err
	}
	h := &held{f: f}
	if err := json.Unmarshal(raw, &h.t); err != nil {
		return nil, fmt.Errorf("index trailer: %w", err)
	}
	if h.t.Zone != zone {
		return nil, fmt.Errorf("index is for %s", h.t.Zone)
	}
	if h.t.TableOffset < 0 || h.t.TableOffset+int64(h.t.Records)*entrySize != tstart {
		return nil, errors.New("index table out of bounds")
	}
	rr, err := dns.NewRR(h.t.SOA)
	soa, ok := rr.(*dns.SOA)
	if err != nil || !ok {
		return nil, fmt.Errorf("index SOA %q unreadable", h.t.SOA)
	}
	h.soa = soa
	if h.table, err = readTable(f, h.t.TableOffset, h.t.Records, h.t.TableSum); err != nil {
		return nil, err
	}
	h.seen = make([]uint64, (h.size()+63)/64)
	return h, nil
}

// entrySize is the bytes a record takes in the table: its hash and its offset.
const entrySize = 12

// readTable reads and checks the table section: n hashes, then n offsets.
func readTable(f *os.File, at int64, n int, sum uint64) (*table, error) {
	in := bufio.NewReaderSize(io.NewSectionReader(f, at, int64(n)*entrySize), 256<<10)
	check := xxhash.New()
	t := &table{hashes: make([]uint64, n), offs: make([]uint32, n)}
	var b [8]byte
	for i := range t.hashes {
		if _, err := io.ReadFull(in, b[:]); err != nil {
			return nil, err
		}
		check.Write(b[:]) //nolint:errcheck // never fails
		t.hashes[i] = binary.BigEndian.Uint64(b[:])
		if i > 0 && t.hashes[i] <= t.hashes[i-1] {
			return nil, errors.New("index table not sorted")
		}
	}
	for i := range t.offs {
		if _, err := io.ReadFull(in, b[:4]); err != nil {
			return nil, err
		}
		check.Write(b[:4]) //nolint:errcheck // never fails
		t.offs[i] = binary.BigEndian.Uint32(b[:4])
	}
	if check.Sum64() != sum {
		return nil, errors.New("index table checksum mismatch")
	}
	t.index()
	return t, nil
}

// recordReader reads records of the records section by offset.
type recordReader struct {
	f   *os.File
	buf []byte
}

func (r *recordReader) at(off int64) (dns.RR, error) {
	var l [2]byte
	if _, err := r.f.ReadAt(l[:], off); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	if _, err := r.f.ReadAt(r.buf[:n], off+2); err != nil {
		return nil, err
	}
	rr, _, err := dns.UnpackRR(r.buf[:n], 0)
	return rr, err
}

// writer builds a new index file while a zone streams through: records are appended in
// the order they come, their table entries kept in memory and sorted at the end. The file
// is created only when its buffer first spills or is flushed, so the index of a zone that
// is not kept (Index.finish: a small zone of a SmallZoneReplacer) never reaches the disk.
type writer struct {
	dir, zone string
	f         *os.File // nil until the first write reaches it
	w         *bufio.Writer
	off       uint64
	entries   *entryLog // the table entries of the records written, in their order
	soa       *dns.SOA
	err       error // why no index can be written (a record not indexed, its file not written)
	installed bool  // renamed into place: discard has no file to remove
}

func newWriter(dir, zone string) *writer {
	w := &writer{dir: dir, zone: zone, entries: newEntryLog(dir)}
	w.w = indexWriters.Get(tempFile{w})
	return w
}

// tempFile is what the writer's buffer writes to: the temp file, created on first use.
type tempFile struct{ w *writer }

func (t tempFile) Write(p []byte) (int, error) {
	if err := t.w.open(); err != nil {
		return 0, err
	}
	return t.w.f.Write(p)
}

// open creates the temp file unless it exists.
func (w *writer) open() error {
	if w.f != nil {
		return nil
	}
	f, err := os.CreateTemp(w.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("diff index: %w", err)
	}
	w.f = f
	return nil
}

// flush writes out what the buffer holds, creating the file even for an empty records
// section: replay and changeSet read the file back.
func (w *writer) flush() error {
	if err := w.w.Flush(); err != nil {
		return err
	}
	return w.open()
}

// records is how many records were written.
func (w *writer) records() int { return w.entries.n }

// appendPacked appends rr's comparison form, behind its 2-byte length, to buf.
func appendPacked(buf []byte, rr dns.RR) ([]byte, error) {
	start := len(buf)
	buf, _, err := backend.AppendCanonical(append(buf, 0, 0), rr)
	if err != nil {
		return buf[:start], err
	}
	binary.BigEndian.PutUint16(buf[start:], uint16(len(buf)-start-2))
	return buf, nil
}

// add appends a packed record and its table entry.
func (w *writer) add(wire []byte, hash uint64) error {
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(wire)))
	w.w.Write(l[:]) //nolint:errcheck // bufio keeps the first error for Flush
	if _, err := w.w.Write(wire); err != nil {
		return err
	}
	if w.off > math.MaxUint32 {
		return errors.New("records section over 4 GiB")
	}
	if err := w.entries.add(hash, uint32(w.off)); err != nil {
		return err
	}
	w.off += uint64(len(wire)) + 2
	return nil
}

// finish sorts the table, drops duplicate records (RFC 2181 §5: one RR), writes table and
// trailer and renames the file into place.
func (w *writer) finish(fingerprint string) error {
	if w.err != nil {
		return w.err
	}
	if w.soa == nil {
		return errors.New("index incomplete: no SOA")
	}
	tab, err := w.entries.table()
	if err != nil {
		return err
	}
	t := trailer{Zone: w.zone, SOA: w.soa.String(), Records: len(tab.hashes), TableOffset: int64(w.off), Fingerprint: fingerprint}
	sum := xxhash.New()
	out := io.MultiWriter(w.w, sum)
	var b [8]byte
	for _, h := range tab.hashes {
		binary.BigEndian.PutUint64(b[:], h)
		out.Write(b[:]) //nolint:errcheck // bufio keeps the first error for Flush
	}
	for _, o := range tab.offs {
		binary.BigEndian.PutUint32(b[:4], o)
		out.Write(b[:4]) //nolint:errcheck // as above
	}
	t.TableSum = sum.Sum64()
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	w.w.Write(raw) //nolint:errcheck // as above
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], uint32(len(raw)))
	w.w.Write(end[:])      //nolint:errcheck // as above
	w.w.WriteString(magic) //nolint:errcheck // as above
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), filepath.Join(w.dir, fileName(w.zone))); err != nil {
		return err
	}
	w.installed = true
	return nil
}

// indexWriters buffer the index files being written. 64 KiB, as the zone files: 256 KiB
// buffers were 7.7 MiB of the agent's live heap in a burst of CREATEs (32 in flight, and
// the pool's spares), doubled by the GC's headroom in its RSS (issue 15), and writing a
// 1M-record index measured no faster with them (BenchmarkFull/create-with-index, 342-480
// ms against 339-427, alternating builds).
var indexWriters = backend.WriterPool{Size: 64 << 10}

// discard removes the unfinished file (after finish: nothing) and frees the buffers.
func (w *writer) discard() {
	w.entries.close()
	if w.f != nil {
		w.f.Close()
		if !w.installed {
			os.Remove(w.f.Name())
		}
	}
	if w.w != nil {
		indexWriters.Put(w.w)
		w.w = nil
	}
}

// replay reads the new zone back as a backend.Source, the SOA first: the records written
// so far (those old lacks), then those of old the new zone holds (keptRecords). For a full
// replace when the difference is not worth applying.
func (w *writer) replay(old *held) (*replay, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	f, err := os.Open(w.f.Name())
	if err != nil {
		return nil, err
	}
	added := newRecordScanner(f, w.off)
	return &replay{f: f, parts: []func() ([]byte, error){added.next, old.keptRecords()}, first: w.soa}, nil
}

// replay is a sequence of records sections read in order, as a backend.Source.
type replay struct {
	f     *os.File
	parts []func() ([]byte, error) // each returns io.EOF at its end
	first dns.RR
}

func (r *replay) Next() ([]dns.RR, error) {
	batch := make([]dns.RR, 0, 1024)
	if r.first != nil {
		batch = append(batch, r.first)
		r.first = nil
	}
	for len(batch) < cap(batch) && len(r.parts) > 0 {
		wire, err := r.parts[0]()
		if err == io.EOF {
			r.parts = r.parts[1:]
			continue
		}
		if err != nil {
			return nil, err
		}
		rr, _, err := dns.UnpackRR(wire, 0)
		if err != nil {
			return nil, err
		}
		batch = append(batch, rr)
	}
	if len(batch) == 0 {
		return nil, io.EOF
	}
	return batch, nil
}

func (r *replay) Close() { r.f.Close() }

// recordScanner reads a records section in order.
type recordScanner struct {
	in  *bufio.Reader
	off int64 // of the next record
	buf []byte
}

func newRecordScanner(f *os.File, size uint64) *recordScanner {
	return &recordScanner{in: bufio.NewReaderSize(io.NewSectionReader(f, 0, int64(size)), 256<<10)}
}

// next returns the next record's bytes, valid until the next call, or io.EOF.
func (s *recordScanner) next() ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(s.in, l[:]); err != nil {
		return nil, err // io.EOF at the end of the section
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(s.in, s.buf[:n]); err != nil {
		return nil, fmt.Errorf("records section cut short: %w", err)
	}
	s.off += int64(n) + 2
	return s.buf[:n], nil
}

// keptRecords returns a reader of the held records the new zone holds (marked), each once,
// in file order: a sequential read of the records section, each record's table entry
// looked up by its hash.
func (h *held) keptRecords() func() ([]byte, error) {
	sc := newRecordScanner(h.f, uint64(h.t.TableOffset))
	return func() ([]byte, error) {
		for {
			off := sc.off
			wire, err := sc.next()
			if err != nil {
				return nil, err
			}
			// A repeated record has the table entry of its first copy only.
			if i := h.find(xxhash.Sum64(wire)); i >= 0 && int64(h.table.offs[i]) == off && h.seen[i/64]&(1<<(i%64)) != 0 {
				return wire, nil
			}
		}
	}
}

// addKept appends the held records the new zone holds (keptRecords): the new index then
// describes the whole new version.
func (w *writer) addKept(old *held) error {
	next := old.keptRecords()
	for {
		wire, err := next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.add(wire, xxhash.Sum64(wire)); err != nil {
			return err
		}
	}
}

// isTemp tells the temp files an interrupted run leaves behind.
func isTemp(name string) bool { return strings.HasPrefix(name, ".tmp-") }

package powerdns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// spool is a transfer converted to rows, kept in memory up to spoolInMemory bytes and
// in an unlinked temporary file beyond. A transaction that must be retried (deadlock,
// lost connection) reads the rows again from it, so a large zone is never held in memory
// and no zone is transferred twice. Reading the whole transfer before the transaction
// starts also keeps the transaction (and its locks) as short as the database allows.
type spool struct {
	buf    spillBuffer
	serial uint32
	rows   int
	// cuts are the delegation points (owners of NS records below the apex): auth depends
	// on them and they may come after their glue in the stream. Only they are kept in
	// memory, never every owner name.
	cuts cuts
	// sign is how the zone is signed (dnssec.go), from its apex records and the NSEC3
	// records' opt-out flag; secure are the owners of DS records (few, at delegations).
	sign   signing
	apex   []row
	optOut bool
	secure map[string]bool
	// Duplicates (RFC 2181 §5: one record, however often the stream repeats it, whatever
	// its owner's case) are found without holding every record: a 32-bit hash of each
	// row's key while spooling (4 bytes a record), sorted once at the end; only rows whose
	// hash occurs twice are compared in full when inserting.
	seed   maphash.Seed
	hashes []uint32
	dups   map[uint32]bool
}

// hash is a hash of r.key(), without building the key.
func (s *spool) hash(r row) uint32 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, f := range []string{r.Name, r.Type, r.Content} {
		h.WriteString(f)
		h.WriteByte(0)
	}
	var prio [8]byte
	binary.LittleEndian.PutUint64(prio[:], uint64(r.Prio))
	h.Write(prio[:])
	return uint32(h.Sum64())
}

// findDups turns the hashes into the set of those seen more than once.
func (s *spool) findDups() {
	slices.Sort(s.hashes)
	for i := 1; i < len(s.hashes); i++ {
		if s.hashes[i] == s.hashes[i-1] {
			if s.dups == nil {
				s.dups = map[uint32]bool{}
			}
			s.dups[s.hashes[i]] = true
		}
	}
	s.hashes = nil
}

// dedup returns a filter that passes each record once, for one pass over the rows.
func (s *spool) dedup() func(row) bool {
	seen := map[string]bool{}
	return func(r row) bool {
		if len(s.dups) == 0 || !s.dups[s.hash(r)] {
			return true
		}
		k := r.key()
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
}

// spoolZone reads src to the end, checking it as it goes: the zone's SOA first, every
// owner inside the zone, no second SOA but the copy that closes an AXFR, every record
// convertible to a row. zone is fully qualified.
func spoolZone(ctx context.Context, zone string, src backend.Source) (_ *spool, err error) {
	s := &spool{cuts: cuts{}, seed: maphash.MakeSeed()}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	apex, err := pdnsName(zone)
	if err != nil {
		return nil, err
	}
	check := backend.StreamCheck{Zone: zone, DropClosingSOA: true}
	var scratch []byte
	soa, err := check.Read(ctx, src, func(batch []dns.RR) error {
		var err error
		scratch, err = s.add(scratch, apex, batch)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.buf.flush(); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.serial = soa.Serial
	s.findDups()
	s.sign = apexSigning(apex, s.apex)
	s.sign.optOut = s.sign.nsec3 != nil && s.optOut
	return s, nil
}

// add converts checked records to rows, writes them and notes the delegation points;
// scratch is a buffer for the encoded row, returned for the next call.
func (s *spool) add(scratch []byte, apex string, rrs []dns.RR) ([]byte, error) {
	for _, rr := range rrs {
		r, err := toRow(rr)
		if err != nil {
			return scratch, err
		}
		switch {
		case r.Type == "NS" && r.Name != apex:
			s.cuts[r.Name] = true
		case r.Type == "DS":
			if s.secure == nil {
				s.secure = map[string]bool{}
			}
			s.secure[r.Name] = true
		case r.Type == "NSEC3":
			if v, ok := rr.(*dns.NSEC3); ok && v.Flags&1 == 1 {
				s.optOut = true
			}
		case r.Name == apex && (r.Type == "RRSIG" || r.Type == "NSEC" || r.Type == "NSEC3PARAM") && len(s.apex) < 100:
			s.apex = append(s.apex, r)
		}
		scratch = appendRow(scratch[:0], r)
		if _, err := s.buf.Write(scratch); err != nil {
			return scratch, fmt.Errorf("spool: %w", err)
		}
		s.hashes = append(s.hashes, s.hash(r))
		s.rows++
	}
	return scratch, nil
}

func (s *spool) close() { s.buf.close() }

// reader starts reading the rows from the beginning.
func (s *spool) reader() (*spoolReader, error) {
	r, err := s.buf.reader()
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &spoolReader{r: r}, nil
}

// spoolInMemory: a zone whose rows take up to this many bytes (a few thousand records)
// stays in memory; a larger one goes to an unlinked temporary file. Most zones of a pool
// are small, and a file each cost a burst of CREATEs a create, an unlink and a 256 KiB
// buffer to clear per zone.
const spoolInMemory = 256 << 10

// spillBuffer holds bytes in memory until they outgrow spoolInMemory, then in an
// unlinked temporary file.
type spillBuffer struct {
	mem  []byte
	f    *os.File
	w    *bufio.Writer
	size int64 // bytes written
}

func (b *spillBuffer) Write(p []byte) (int, error) {
	b.size += int64(len(p))
	if b.f == nil && len(b.mem)+len(p) <= spoolInMemory {
		b.mem = append(b.mem, p...)
		return len(p), nil
	}
	if b.f == nil {
		f, err := os.CreateTemp("", "dnsagent-powerdns-*.spool")
		if err != nil {
			return 0, err
		}
		// Unlinked at once: nothing is left behind whatever happens to the process.
		os.Remove(f.Name())
		b.f, b.w = f, bufio.NewWriterSize(f, 256<<10)
		if _, err := b.w.Write(b.mem); err != nil {
			return 0, err
		}
		b.mem = nil
	}
	return b.w.Write(p)
}

// flush ends the writing.
func (b *spillBuffer) flush() error {
	if b.w == nil {
		return nil
	}
	return b.w.Flush()
}

// reader reads the bytes from the beginning.
func (b *spillBuffer) reader() (byteReader, error) {
	if b.f == nil {
		return bytes.NewReader(b.mem), nil
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return bufio.NewReaderSize(b.f, 256<<10), nil
}

func (b *spillBuffer) close() {
	if b.f != nil {
		b.f.Close()
	}
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

type spoolReader struct{ r byteReader }

// next returns the next row, or io.EOF after the last.
func (sr *spoolReader) next() (row, error) {
	var r row
	var err error
	if r.Name, err = readString(sr.r); err != nil {
		return row{}, err // io.EOF at a row boundary is the clean end
	}
	if r.Type, err = readString(sr.r); err == nil {
		if r.Content, err = readString(sr.r); err == nil {
			var ttl, prio uint64
			if ttl, err = binary.ReadUvarint(sr.r); err == nil {
				prio, err = binary.ReadUvarint(sr.r)
				r.TTL, r.Prio = uint32(ttl), int(prio)
			}
		}
	}
	if err != nil {
		return row{}, fmt.Errorf("spool: truncated row: %w", noEOF(err))
	}
	if t, ok := strings.CutPrefix(r.Type, "-"); ok {
		r.Type, r.Disabled = t, true
	}
	return r, nil
}

// appendRow appends one row to dst: name, type and content as length-prefixed strings,
// then TTL and prio as varints. Auth is not stored: it is computed from the cuts when
// inserting.
func appendRow(dst []byte, r row) []byte {
	if r.Disabled {
		r.Type = "-" + r.Type // a type that PowerDNS does not serve (see toRow)
	}
	for _, s := range []string{r.Name, r.Type, r.Content} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(r.TTL))
	return binary.AppendUvarint(dst, uint64(r.Prio))
}

func readString(r byteReader) (string, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return "", err
	}
	if n > maxContentLen {
		return "", fmt.Errorf("spool: string of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", noEOF(err)
	}
	return string(b), nil
}

// noEOF turns an end of file inside a row into an error that does not look like the end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

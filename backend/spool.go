package backend

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/miekg/dns"
)

// spool is an append-only file of records, each in wire format (uncompressed) and then as
// its Presentation line, each of the two after its 4-byte length, read back from the start
// as often as needed. The line costs disk, not memory: Patcher hashes every record's key,
// which is read from the line, and unpacking 1M records for it was a burst of 150 MB of
// garbage. The file is unlinked as
// soon as it is created: its space is the system's to free when it is closed, even if the
// agent dies first, and nothing is ever left to sweep.
type spool struct {
	f      *os.File
	w      *bufio.Writer
	size   int64
	buf    []byte
	shared bool // a ChangeSet.Copy's: the original closes the file
}

func newSpool(dir string) (*spool, error) {
	f, err := unlinkedTemp(dir)
	if err != nil {
		return nil, err
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 64<<10), buf: make([]byte, 4+dns.MaxMsgSize)}, nil
}

// unlinkedTemp creates a temp file in dir ("": os.TempDir) and unlinks it at once.
func unlinkedTemp(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".dnsagent-ixfr-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (s *spool) write(rr dns.RR) error {
	n, err := dns.PackRR(rr, s.buf, 4, nil, false)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(s.buf, uint32(n-4))
	s.buf = AppendPresentation(append(s.buf[:n], 0, 0, 0, 0), rr)
	binary.BigEndian.PutUint32(s.buf[n:], uint32(len(s.buf)-n-4))
	_, err = s.w.Write(s.buf)
	s.size += int64(len(s.buf))
	s.buf = s.buf[:cap(s.buf)]
	return err
}

// reader starts reading the records from the first one.
func (s *spool) reader() (*spoolReader, error) {
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("spooling the change set: %w", err)
	}
	return &spoolReader{r: bufio.NewReaderSize(io.NewSectionReader(s.f, 0, s.size), 64<<10)}, nil
}

func (s *spool) close() error {
	if s.shared {
		return nil
	}
	return s.f.Close()
}

type spoolReader struct {
	r   *bufio.Reader
	buf []byte
}

// field reads the length of the next field; skip passes over it.
func (r *spoolReader) field(skip bool) (int, error) {
	var l [4]byte
	if _, err := io.ReadFull(r.r, l[:]); err != nil {
		return 0, fmt.Errorf("reading the spooled change set: %w", err)
	}
	n := int(binary.BigEndian.Uint32(l[:]))
	if skip {
		if _, err := r.r.Discard(n); err != nil {
			return 0, fmt.Errorf("reading the spooled change set: %w", err)
		}
	}
	return n, nil
}

// read reads the next field, n bytes, into r.buf.
func (r *spoolReader) read(n int) error {
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		return fmt.Errorf("reading the spooled change set: %w", err)
	}
	return nil
}

// skip passes over the next record.
func (r *spoolReader) skip() error {
	if _, err := r.field(true); err != nil {
		return err
	}
	_, err := r.field(true)
	return err
}

// next reads the next record.
func (r *spoolReader) next() (dns.RR, error) {
	n, err := r.field(false)
	if err == nil {
		err = r.read(n)
	}
	if err != nil {
		return nil, err
	}
	rr, _, err := dns.UnpackRR(r.buf, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the spooled change set: %w", err)
	}
	_, err = r.field(true)
	return rr, err
}

// nextLine reads the next record's Presentation line, valid until the next call.
func (r *spoolReader) nextLine() ([]byte, error) {
	if _, err := r.field(true); err != nil {
		return nil, err
	}
	n, err := r.field(false)
	if err == nil {
		err = r.read(n)
	}
	return r.buf, err
}

// changeFile is an unlinked file of changes (12 bytes each), one partition of the table
// Patcher sorts.
type changeFile struct {
	f   *os.File
	w   *bufio.Writer
	n   int
	buf [12]byte
}

func newChangeFile(dir string) (*changeFile, error) {
	f, err := unlinkedTemp(dir)
	if err != nil {
		return nil, err
	}
	return &changeFile{f: f, w: bufio.NewWriterSize(f, 8<<10)}, nil
}

func (c *changeFile) write(ch change) error {
	binary.BigEndian.PutUint64(c.buf[:8], ch.h)
	binary.BigEndian.PutUint32(c.buf[8:], ch.v)
	c.n++
	_, err := c.w.Write(c.buf[:])
	return err
}

// readAll appends the changes written to t.
func (c *changeFile) readAll(t []change) ([]change, error) {
	if err := c.w.Flush(); err != nil {
		return t, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(c.f, 0, int64(c.n)*12), 32<<10)
	t = slices.Grow(t, c.n)
	for range c.n {
		if _, err := io.ReadFull(r, c.buf[:]); err != nil {
			return t, err
		}
		t = append(t, change{binary.BigEndian.Uint64(c.buf[:8]), binary.BigEndian.Uint32(c.buf[8:])})
	}
	return t, nil
}

func (c *changeFile) close() { c.f.Close() }

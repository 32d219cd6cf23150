package backend

import (
	"bufio"
	"io"
	"sync"
)

// WriterPool hands out bufio.Writers of one size. A burst of CREATEs writes thousands of
// small zones a second, and a fresh 64-256 KiB buffer for each (allocated, zeroed,
// collected) cost more CPU than writing the zone (issue 15).
type WriterPool struct {
	Size int
	pool sync.Pool
}

// Get returns a writer to w, empty.
func (p *WriterPool) Get(w io.Writer) *bufio.Writer {
	if b, ok := p.pool.Get().(*bufio.Writer); ok {
		b.Reset(w)
		return b
	}
	return bufio.NewWriterSize(w, p.Size)
}

// Put gives b back; the caller must not use it any more.
func (p *WriterPool) Put(b *bufio.Writer) {
	b.Reset(nil) // drop the reference to the file
	p.pool.Put(b)
}

// ReaderPool hands out bufio.Readers of one size, as WriterPool does writers. The transfer
// client reads every SOA answer and every transfer through one: in a burst of 100,000
// CREATEs a new 28 KiB read buffer for each transfer was 61% of all the bytes the agent
// allocated (heap profile, issue 15).
type ReaderPool struct {
	Size int
	pool sync.Pool
}

// Get returns a reader from r, empty.
func (p *ReaderPool) Get(r io.Reader) *bufio.Reader {
	if b, ok := p.pool.Get().(*bufio.Reader); ok {
		b.Reset(r)
		return b
	}
	return bufio.NewReaderSize(r, p.Size)
}

// Put gives b back; the caller must not use it any more.
func (p *ReaderPool) Put(b *bufio.Reader) {
	b.Reset(nil) // drop the reference to the connection
	p.pool.Put(b)
}

package zonediff

import (
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// Reading the transfer (unpacking the primary's messages) and hashing its records run on
// two goroutines, so the two cores share the work instead of taking turns.

// aheadBatches bounds the batches read ahead: a few messages' worth of records.
const aheadBatches = 16

type batchOrErr struct {
	batch []dns.RR
	err   error
}

// ahead is a backend.Source reading its source in a goroutine of its own.
type ahead struct {
	src  backend.Source
	ch   chan batchOrErr
	stop chan struct{}
	done chan struct{}
	err  error // sticky, once the source ended
}

// readAhead starts reading src. Call close when done with it.
func readAhead(src backend.Source) *ahead {
	a := &ahead{src: src, ch: make(chan batchOrErr, aheadBatches), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			batch, err := src.Next()
			select {
			case a.ch <- batchOrErr{batch, err}:
			case <-a.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *ahead) Next() ([]dns.RR, error) {
	if a.err != nil {
		return nil, a.err
	}
	r := <-a.ch
	a.err = r.err
	return r.batch, r.err
}

// close stops the reader and waits for it. A reader blocked in src.Next is freed by
// interrupting src, when it can be (a transfer stream can): the caller then reads the
// source's counters, and closes it, without a race.
func (a *ahead) close() {
	close(a.stop)
	if i, ok := a.src.(backend.Interrupter); ok {
		select {
		case <-a.done:
		default:
			i.Interrupt()
		}
	}
	<-a.done
}

// indexing is a backend.Source passing src through to the backend while a goroutine of
// its own hashes every record and writes it to the index. The records are packed here,
// before the backend sees them: packing sets the header's Rdlength.
type indexing struct {
	w    *writer
	src  backend.Source
	ch   chan []byte // packed records, each behind its 2-byte length
	free chan []byte // chunks the index writer is done with, for reuse
	done chan struct{}

	packErr   error     // a record that could not be packed: Next's, read by the goroutine once ch is closed
	closeOnce sync.Once // wait may run twice: once the backend committed, and at the end
}

func tee(w *writer, src backend.Source) *indexing {
	t := &indexing{w: w, src: src, ch: make(chan []byte, aheadBatches), free: make(chan []byte, aheadBatches+1),
		done: make(chan struct{})}
	go func() {
		defer close(t.done)
		for chunk := range t.ch {
			recycle := chunk[:0]
			for len(chunk) > 0 && w.err == nil {
				n := int(chunk[0])<<8 | int(chunk[1])
				wire := chunk[2 : 2+n]
				w.err = w.add(wire, xxhash.Sum64(wire))
				chunk = chunk[2+n:]
			}
			select {
			case t.free <- recycle:
			default:
			}
		}
		if w.err == nil {
			w.err = t.packErr // Next is done: ch was closed after its last call
		}
	}()
	return t
}

func (t *indexing) Next() ([]dns.RR, error) {
	batch, err := t.src.Next()
	rrs := batch
	if t.w.soa == nil && len(rrs) > 0 {
		if soa, ok := rrs[0].(*dns.SOA); ok {
			t.w.soa, rrs = soa, rrs[1:]
		}
	}
	if t.packErr != nil {
		return batch, err // no index this time; the transfer itself goes on
	}
	var chunk []byte
	select {
	case chunk = <-t.free:
	default:
	}
	for _, rr := range rrs {
		if chunk, t.packErr = appendPacked(chunk, rr); t.packErr != nil {
			break
		}
	}
	if len(chunk) > 0 {
		t.ch <- chunk
	}
	return batch, err
}

// wait lets the index writer finish what it was given.
func (t *indexing) wait() {
	t.closeOnce.Do(func() { close(t.ch) })
	<-t.done
}

package fanout

import (
	"errors"
	"sync"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// errDetached is what a tap returns once its member stopped reading.
var errDetached = errors.New("fan-out: the member stopped reading")

// item is one batch of the source, or its end (io.EOF) or failure.
type item struct {
	batch []dns.RR
	err   error
}

// splitter reads a source once, in a goroutine of its own, and hands every tap its own
// copy of each batch. Each tap queues what its member has not read yet, so a slow member
// never holds back a fast one (the slow one's queue grows, up to the whole zone), and a
// member that stops reading (it failed) is dropped from the delivery.
type splitter struct {
	src  backend.Source
	mu   sync.Mutex
	cond *sync.Cond
	taps []*tap
	done chan struct{} // the reader ended
}

// tap is one member's backend.Source.
type tap struct {
	s      *splitter
	queue  []item
	closed bool
}

// split starts reading src for n taps; first is what was read of src already.
func split(src backend.Source, first item, n int) *splitter {
	s := &splitter{src: src, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	for range n {
		s.taps = append(s.taps, &tap{s: s})
	}
	go s.read(first)
	return s
}

func (s *splitter) read(it item) {
	defer close(s.done)
	for s.deliver(it) && it.err == nil {
		it.batch, it.err = s.src.Next()
	}
}

// deliver queues it on every open tap; false once no tap is open. The copies are made
// before any member sees the batch: backends may set fields of the records they are given
// (packing sets the length), so no two members may share a record.
func (s *splitter) deliver(it item) bool {
	s.mu.Lock()
	var open []*tap
	for _, t := range s.taps {
		if !t.closed {
			open = append(open, t)
		}
	}
	s.mu.Unlock()
	if len(open) == 0 {
		return false
	}
	copies := make([]item, len(open))
	for i := range open {
		copies[i] = it
		if i > 0 {
			copies[i].batch = copyBatch(it.batch)
		}
	}
	s.mu.Lock()
	for i, t := range open {
		if !t.closed {
			t.queue = append(t.queue, copies[i])
		}
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	return true
}

// stop ends the reader once every member is done. A reader still blocked in the source
// (every member failed before the end) is freed by interrupting the source, when it can
// be (a transfer stream can).
func (s *splitter) stop() {
	for _, t := range s.taps {
		t.Close()
	}
	select {
	case <-s.done:
	default:
		if i, ok := s.src.(backend.Interrupter); ok {
			i.Interrupt()
		}
	}
	<-s.done
}

// Next returns the next batch; the source's end or failure is returned again and again.
func (t *tap) Next() ([]dns.RR, error) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(t.queue) == 0 && !t.closed {
		s.cond.Wait()
	}
	if t.closed {
		return nil, errDetached
	}
	it := t.queue[0]
	if it.err != nil {
		t.queue = []item{{err: it.err}}
		return it.batch, it.err
	}
	t.queue[0] = item{}
	t.queue = t.queue[1:]
	return it.batch, nil
}

// Close detaches the tap: its queue is dropped and nothing more is delivered to it.
func (t *tap) Close() {
	t.s.mu.Lock()
	t.closed, t.queue = true, nil
	t.s.cond.Broadcast()
	t.s.mu.Unlock()
}

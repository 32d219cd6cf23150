package rawudp

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pollee is a socket in a Poller whose reader counts what it read.
type pollee struct {
	conn   *net.UDPConn
	batch  *Batch
	got    atomic.Int32 // datagrams read
	remove func()
}

func addPollee(t *testing.T, p *Poller, inside *atomic.Int32, overlap *atomic.Bool) *pollee {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := New(conn)
	if err != nil {
		t.Fatal(err)
	}
	s := &pollee{conn: conn, batch: raw.NewBatch(4, 512, 0)}
	s.remove, err = p.Add(raw, func() {
		if inside.Add(1) > 1 {
			overlap.Store(true)
		}
		defer inside.Add(-1)
		time.Sleep(time.Millisecond) // long enough for another call to overlap, were there one
		for {
			n, err := s.batch.ReadNow()
			if n == 0 || err != nil {
				return
			}
			s.got.Add(int32(n))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *pollee) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		if _, err := s.conn.WriteToUDP([]byte("x"), s.conn.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
	}
}

func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A Poller calls the reader of each socket with something to read, one call at a time,
// stops calling one once it is removed, and ends its goroutine and epoll set with the
// last one; a socket added after that is read again.
func TestPollerReadsReadySocketsOneAtATime(t *testing.T) {
	var p Poller
	var inside atomic.Int32
	var overlap atomic.Bool
	a, b := addPollee(t, &p, &inside, &overlap), addPollee(t, &p, &inside, &overlap)
	a.send(t, 30)
	b.send(t, 20)
	if !eventually(func() bool { return a.got.Load() == 30 && b.got.Load() == 20 }) {
		t.Fatalf("read %d and %d datagrams, sent 30 and 20", a.got.Load(), b.got.Load())
	}
	if overlap.Load() {
		t.Error("two readers ran at once")
	}

	a.remove()
	a.send(t, 5)
	b.send(t, 5)
	if !eventually(func() bool { return b.got.Load() == 25 }) {
		t.Fatalf("the socket still in read %d datagrams, want 25", b.got.Load())
	}
	time.Sleep(20 * time.Millisecond)
	if got := a.got.Load(); got != 30 {
		t.Errorf("the removed socket's reader was called: %d datagrams read, want 30", got)
	}

	b.remove()
	if !eventually(func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.file == nil && !p.running }) {
		t.Fatal("the Poller kept its epoll set and goroutine with no socket in")
	}
	c := addPollee(t, &p, &inside, &overlap)
	c.send(t, 3)
	if !eventually(func() bool { return c.got.Load() == 3 }) {
		t.Fatalf("a socket added to the emptied Poller read %d datagrams, want 3", c.got.Load())
	}
	c.remove()
}

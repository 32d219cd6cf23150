package connpool

import (
	"io"
	"net"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T, ln net.Listener) (local, peer net.Conn) {
	t.Helper()
	local, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close(); peer.Close() })
	return local, peer
}

// closedByPool tells whether the pool closed local: its peer reads EOF.
func closedByPool(t *testing.T, peer net.Conn, within time.Duration) bool {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(within))
	_, err := peer.Read(make([]byte, 1))
	return err == io.EOF
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Connections come back by destination, the most recently used first; past MaxIdle a
// connection put back is closed.
func TestGetByDestinationMostRecentFirst(t *testing.T) {
	ln := listen(t)
	p := &Pool[string]{MaxIdle: 2, IdleTimeout: time.Minute}
	a, _ := pair(t, ln)
	b, _ := pair(t, ln)
	c, _ := pair(t, ln)
	extra, extraPeer := pair(t, ln)
	p.Put("one", a)
	p.Put("one", b)
	p.Put("two", c)
	p.Put("one", extra)
	if !closedByPool(t, extraPeer, time.Second) {
		t.Error("a connection past MaxIdle was kept")
	}
	if got := p.Get("one"); got != b {
		t.Errorf("Get(one) = %v, want the last put (%v)", got.LocalAddr(), b.LocalAddr())
	}
	if got := p.Get("one"); got != a {
		t.Errorf("second Get(one) = %v, want the first put (%v)", got.LocalAddr(), a.LocalAddr())
	}
	if got := p.Get("one"); got != nil {
		t.Errorf("Get(one) on an empty destination = %v, want nil", got.LocalAddr())
	}
	if got := p.Get("two"); got != c {
		t.Error("Get(two) did not return its own connection")
	}
}

// An idle connection is closed after IdleTimeout, not before.
func TestIdleConnectionsClosed(t *testing.T) {
	ln := listen(t)
	// Margins of a second or more: a loaded 2-core machine under -race runs timers late.
	p := &Pool[int]{MaxIdle: 4, IdleTimeout: 2 * time.Second}
	first, firstPeer := pair(t, ln)
	p.Put(1, first)
	time.Sleep(time.Second)
	second, secondPeer := pair(t, ln)
	p.Put(2, second)
	if closedByPool(t, firstPeer, 100*time.Millisecond) {
		t.Fatal("a connection idle for half of IdleTimeout was closed")
	}
	if !closedByPool(t, firstPeer, 2*time.Second) {
		t.Fatal("a connection idle past IdleTimeout was not closed")
	}
	if p.Idle(1) != 0 || p.Idle(2) != 1 {
		t.Fatalf("idle after the first timeout: %d and %d, want 0 and 1", p.Idle(1), p.Idle(2))
	}
	if !closedByPool(t, secondPeer, 3*time.Second) || p.Idle(2) != 0 {
		t.Fatal("the later connection was not closed at its own timeout")
	}
}

// A nil pool keeps nothing.
func TestNilPoolKeepsNothing(t *testing.T) {
	var p *Pool[int]
	conn, peer := pair(t, listen(t))
	p.Put(1, conn)
	if !closedByPool(t, peer, time.Second) {
		t.Error("a nil pool did not close the connection put back")
	}
	if p.Get(1) != nil || p.Idle(1) != 0 {
		t.Error("a nil pool returned a connection")
	}
}

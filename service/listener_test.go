package service

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// A client that stops reading cannot hold a connection: a reply it does not take within
// the write timeout fails the write and closes the connection, where without a deadline
// the write would block for good.
func TestCountedConnBoundsWrites(t *testing.T) {
	server, client := net.Pipe() // unbuffered: a write blocks until the other end reads
	defer client.Close()
	released := 0
	c := &countedConn{Conn: server, release: func() { released++ }, writeTimeout: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 512))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("write to a client that does not read: %v, want the deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to a client that does not read still blocks after 5 s")
	}
	if released != 1 {
		t.Errorf("after the failed write the slot was released %d times, want once: the connection is closed", released)
	}
	if _, err := client.Write([]byte("next query")); err == nil {
		t.Error("the client can still send on a connection whose reply write failed")
	}
	c.Close() // miekg/dns closes it again: the slot is not given back twice
	if released != 1 {
		t.Errorf("slot released %d times, want once", released)
	}
}

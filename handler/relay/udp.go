package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// udpSocket is one UDP socket connected to the destination, shared by the queries sent
// on it. Its reader hands each answer to the query whose id, question and socket it
// matches; anything else is dropped.
type udpSocket struct {
	client *Client

	mu       sync.Mutex
	conn     *net.UDPConn     // nil until the first query and after an idle close
	pending  map[uint16]*call // ids in use: waiting, or quarantined after a timeout
	inflight int              // calls waiting for an answer
}

// call is one query waiting on a udpSocket.
type call struct {
	q       question
	done    chan result // buffered: the reader never blocks on it
	expires time.Time   // zero while waiting; set when abandoned: the id is quarantined
}

type result struct {
	a   *Answer
	err error
}

// exchange sends query with a free id and waits for the answer, or ctx's end.
func (s *udpSocket) exchange(ctx context.Context, query []byte, q question) (*Answer, error) {
	c := &call{q: q, done: make(chan result, 1)}
	conn, id, err := s.register(c)
	if err != nil {
		return nil, err
	}
	out := getBuffer(len(query))
	copy(*out, query)
	binary.BigEndian.PutUint16(*out, id)
	_, err = conn.Write(*out)
	putBuffer(out)
	if err != nil {
		s.abandon(id, c)
		return nil, err
	}
	select {
	case r := <-c.done:
		return r.a, r.err
	case <-ctx.Done():
		s.abandon(id, c)
		return nil, ctx.Err()
	}
}

// register opens the socket if needed and reserves a random free id for c.
func (s *udpSocket) register(c *call) (*net.UDPConn, uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		raddr, err := net.ResolveUDPAddr("udp", s.client.destination)
		if err != nil {
			return nil, 0, err
		}
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, 0, err
		}
		s.conn, s.pending = conn, map[uint16]*call{}
		go s.read(conn)
	}
	now := time.Now()
	if len(s.pending) >= maxPending {
		for id, p := range s.pending {
			if !p.expires.IsZero() && now.After(p.expires) {
				delete(s.pending, id)
			}
		}
		if len(s.pending) >= maxPending {
			return nil, 0, errors.New("too many queries in flight")
		}
	}
	for {
		// Random ids (RFC 5452 §4.3): an off-path sender cannot guess which one is waiting.
		id := newID()
		if p, used := s.pending[id]; !used || (!p.expires.IsZero() && now.After(p.expires)) {
			s.pending[id] = c
			s.inflight++
			return s.conn, id, nil
		}
	}
}

// newID draws a message id; tests replace it to force collisions.
var newID = func() uint16 { return uint16(rand.Uint32()) }

// abandon gives up waiting for c. Its id stays reserved for a timeout, so a late answer
// is dropped rather than taken for the answer to a later query with that id. If the
// answer arrived meanwhile, its buffer goes back to the pool.
func (s *udpSocket) abandon(id uint16, c *call) {
	s.mu.Lock()
	waiting := s.pending[id] == c && c.expires.IsZero()
	if waiting {
		c.expires = time.Now().Add(s.client.timeout)
		s.inflight--
	}
	s.mu.Unlock()
	if !waiting {
		select {
		case r := <-c.done:
			r.a.Release()
		default:
		}
	}
}

// read delivers answers until the socket is closed: by itself after idleTimeout without a
// query waiting, when its owner (the queries in flight) is gone.
func (s *udpSocket) read(conn *net.UDPConn) {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		conn.SetReadDeadline(time.Now().Add(idleTimeout)) //nolint:errcheck // fails only once closed
		n, err := conn.Read(buf)
		if err != nil {
			if s.readFailed(conn, err) {
				return
			}
			continue
		}
		if n < 12 {
			continue
		}
		s.deliver(buf[:n])
	}
}

// deliver hands msg to the call waiting for it, if any.
func (s *udpSocket) deliver(msg []byte) {
	id := binary.BigEndian.Uint16(msg)
	s.mu.Lock()
	c := s.pending[id]
	if c == nil || !c.expires.IsZero() || !answers(msg, id, c.q) {
		s.mu.Unlock()
		return // late, stray or spoofed
	}
	delete(s.pending, id)
	s.inflight--
	s.mu.Unlock()
	b := getBuffer(len(msg))
	copy(*b, msg)
	c.done <- result{a: &Answer{Bytes: *b, buf: b}}
}

// readFailed handles a read error and reports whether the reader ends. An idle socket is
// closed; an ICMP error (the destination refused, RFC 1122 §4.1.3.3) fails every query
// waiting on the socket, as it would have failed a socket of their own.
func (s *udpSocket) readFailed(conn *net.UDPConn, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ne net.Error
	switch {
	case errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		if s.inflight > 0 {
			return false
		}
		conn.Close()
		s.conn, s.pending = nil, nil // a late answer now meets a closed port
		return true
	}
	expires := time.Now().Add(s.client.timeout)
	for _, c := range s.pending {
		if c.expires.IsZero() {
			c.expires = expires
			c.done <- result{err: err}
		}
	}
	s.inflight = 0
	return false
}

package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/internal/rawudp"
	"github.com/miekg/dns"
)

// udpSocket is one UDP socket connected to the destination, shared by the queries sent
// on it. Its Client's Poller hands each answer to the query whose id, question and socket
// it matches (readable); anything else is dropped. A timer sweeps it (tick).
type udpSocket struct {
	client *Client

	mu       sync.Mutex
	conn     *net.UDPConn     // the socket: nil until the first query and after an idle close
	raw      *rawudp.Conn     // conn's raw calls
	unpoll   func()           // takes it out of the Poller
	pending  map[uint16]*call // ids in use: waiting, or quarantined after a timeout
	inflight atomic.Int32     // calls waiting for an answer; changed with mu held, read without (Client.pick)
	lastUse  time.Time        // when the last query was sent
	sweeps   *time.Timer      // runs tick while the socket is open; made at the first open

	out rawudp.Outbox // the Poller's goroutine's: the replies to what one ReadNow got
}

// call is one query waiting on a udpSocket: for an answer on done (Exchange), or to be
// given to reply (Send).
type call struct {
	q       question
	done    chan result // buffered: the reader never blocks on it
	expires time.Time   // zero while waiting; set when abandoned: the id is quarantined

	reply    Replier   // Send's; nil for Exchange
	clientID uint16    // Send's: the id the answer goes back with
	deadline time.Time // Send's: the reader fails the call after this
}

type result struct {
	a   *Answer
	err error
}

// exchange sends query with a free id and waits for the answer, or ctx's end.
func (s *udpSocket) exchange(ctx context.Context, query []byte, q question) (*Answer, error) {
	c := &call{q: q, done: make(chan result, 1)}
	raw, id, err := s.register(c)
	if err != nil {
		return nil, err
	}
	out := getBuffer(len(query))
	copy(*out, query)
	binary.BigEndian.PutUint16(*out, id)
	err = raw.Write(*out)
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

// send sends query with a free id; the reader gives the answer, or the failure, to
// c.reply. An error means c.reply is never called.
func (s *udpSocket) send(query []byte, c *call) error {
	raw, id, err := s.register(c)
	if err != nil {
		return err
	}
	out := getBuffer(len(query))
	copy(*out, query)
	binary.BigEndian.PutUint16(*out, id)
	err = raw.Write(*out)
	putBuffer(out)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	waiting := s.pending[id] == c && c.expires.IsZero()
	if waiting { // else the reader failed it already (an ICMP error) and told c.reply
		c.expires = time.Now().Add(s.client.timeout)
		s.inflight.Add(-1)
	}
	s.mu.Unlock()
	if !waiting {
		return nil
	}
	return err
}

// register opens the socket if needed and reserves a random free id for c.
func (s *udpSocket) register(c *call) (*rawudp.Conn, uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == nil {
		if err := s.open(); err != nil {
			return nil, 0, err
		}
	}
	now := time.Now()
	s.lastUse = now
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
			s.inflight.Add(1)
			return s.raw, id, nil
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
		s.inflight.Add(-1)
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

// open opens the socket, puts it in the Client's Poller and starts its sweeps; s.mu is
// held.
func (s *udpSocket) open() error {
	raddr, err := net.ResolveUDPAddr("udp", s.client.destination)
	if err != nil {
		return err
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return err
	}
	raw, err := rawudp.New(conn)
	if err == nil {
		batch := raw.NewBatch(readBatch, dns.MaxMsgSize, 0)
		s.unpoll, err = s.client.poller.Add(raw, func() { s.readable(raw, batch) })
	}
	if err != nil {
		conn.Close()
		return err
	}
	s.conn, s.raw, s.pending = conn, raw, map[uint16]*call{}
	if s.sweeps == nil {
		s.sweeps = time.AfterFunc(sweepInterval, s.tick)
	} else {
		s.sweeps.Reset(sweepInterval)
	}
	return nil
}

// readable delivers the answers waiting on raw, from the Poller's goroutine, for a turn
// (rawudp.Turn): then the Poller's other sockets are read.
func (s *udpSocket) readable(raw *rawudp.Conn, batch *rawudp.Batch) {
	err := batch.Drain(func(n int) {
		for i := range n {
			if msg, _, _ := batch.Datagram(i); len(msg) >= 12 {
				s.deliver(msg, &s.out)
			}
		}
		s.out.Flush() // before the next read reuses the answers' bytes
	})
	if err != nil {
		s.readFailed(raw, err, &s.out)
		s.out.Flush()
	}
}

// readBatch is how many answers one read takes (rawudp.Batch).
const readBatch = 16

// sweepInterval is how often a socket is swept for calls of Send past their deadline:
// the resolution of their timeout.
const sweepInterval = 100 * time.Millisecond

// tick is the sweeps timer's: one timer for the socket's life, not a new one every sweep.
func (s *udpSocket) tick() {
	var out rawudp.Outbox
	s.sweep(time.Now(), &out)
	out.Flush()
}

// sweep fails the calls of Send past their deadline (their ids are quarantined like an
// abandoned Exchange's), forgets quarantined ids whose time is up, and closes the socket
// once it was idle for idleTimeout; it reports whether it closed it (or found it closed).
// While the socket stays open the next sweep is due sweepInterval later; the next open
// starts them again.
func (s *udpSocket) sweep(now time.Time, out *rawudp.Outbox) bool {
	var expired []*call
	s.mu.Lock()
	if s.conn == nil {
		s.mu.Unlock()
		return true
	}
	for id, c := range s.pending {
		switch {
		case !c.expires.IsZero():
			if now.After(c.expires) {
				delete(s.pending, id)
			}
		case c.reply != nil && now.After(c.deadline):
			c.expires = now.Add(s.client.timeout)
			s.inflight.Add(-1)
			expired = append(expired, c)
		}
	}
	idle := s.inflight.Load() == 0 && now.Sub(s.lastUse) >= idleTimeout
	if idle {
		s.unpoll()
		s.conn.Close()
		s.conn, s.raw, s.pending = nil, nil, nil // a late answer now meets a closed port
	} else {
		s.sweeps.Reset(sweepInterval)
	}
	s.mu.Unlock()
	for _, c := range expired {
		c.reply.Reply(nil, s.client.failed("udp", fmt.Errorf("no answer within %v: %w", s.client.timeout, context.DeadlineExceeded)), out)
	}
	return idle
}

// deliver hands msg to the call waiting for it, if any.
func (s *udpSocket) deliver(msg []byte, out *rawudp.Outbox) {
	id := binary.BigEndian.Uint16(msg)
	s.mu.Lock()
	c := s.pending[id]
	if c == nil || !c.expires.IsZero() || !answers(msg, id, c.q) {
		s.mu.Unlock()
		return // late, stray or spoofed
	}
	delete(s.pending, id)
	s.inflight.Add(-1)
	s.mu.Unlock()
	if c.reply != nil {
		binary.BigEndian.PutUint16(msg, c.clientID)
		c.reply.Reply(msg, nil, out)
		return
	}
	b := getBuffer(len(msg))
	copy(*b, msg)
	c.done <- result{a: &Answer{Bytes: *b, buf: b}}
}

// readFailed handles an error reading raw. An ICMP error (the destination refused, RFC
// 1122 §4.1.3.3) fails every query waiting on the socket, as it would have failed a
// socket of their own; raw closed by the sweep meanwhile is no error.
func (s *udpSocket) readFailed(raw *rawudp.Conn, err error, out *rawudp.Outbox) {
	var replies []*call
	s.mu.Lock()
	if s.raw != raw {
		s.mu.Unlock()
		return
	}
	expires := time.Now().Add(s.client.timeout)
	for _, c := range s.pending {
		if c.expires.IsZero() {
			c.expires = expires
			if c.reply != nil {
				replies = append(replies, c)
			} else {
				c.done <- result{err: err}
			}
		}
	}
	s.inflight.Store(0)
	s.mu.Unlock()
	for _, c := range replies {
		c.reply.Reply(nil, s.client.failed("udp", err), out)
	}
}

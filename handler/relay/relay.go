// Package relay owns the agent's connections to query_destination: a few UDP sockets
// shared by every relayed query, each with its own table from upstream message id to the
// query waiting for it, and a pool of TCP connections used one query at a time. Answers
// come back as raw bytes in pooled buffers; nothing is rewritten but the id.
package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/internal/rawudp"
)

const (
	// udpSockets is how many UDP sockets the queries are spread over, each with its own
	// 16-bit id space. Four: a server with several threads (named: one UDP socket per
	// thread, SO_REUSEPORT) spreads its clients over them by address and port, and the
	// answers come back sooner when more than one thread works. Through one socket named
	// answered on one thread; with four, at 16 clients, the agent relayed 0.55–0.58× of
	// named's direct throughput, dnsdist 0.56–0.58×, one socket 0.51× (issue 15's bench,
	// bench/README.md). One goroutine reads them all (the Poller): more sockets cost no
	// more wake-ups. The queries in flight are capped far below the id space (the query
	// slots, service.maxQueriesServing).
	udpSockets = 4
	// idleTimeout closes a UDP socket (taking it out of the Poller) or a pooled TCP
	// connection that carried nothing for this long; the next query opens a new one.
	// named closes idle TCP connections after 30 s itself (tcp-idle-timeout).
	idleTimeout = 20 * time.Second
	// maxIdleTCP bounds the TCP connections kept open between queries.
	maxIdleTCP = 16
	// maxPending bounds the ids in use on one UDP socket (waiting or quarantined), far
	// below 65536 so a free id is found in a few random draws.
	maxPending = 16384
)

// Client relays queries to one server. The zero value is not usable: use New.
type Client struct {
	destination string
	timeout     time.Duration
	next        atomic.Uint32
	udp         [udpSockets]udpSocket
	tcp         tcpPool
	poller      *rawudp.Poller // reads the UDP sockets
}

// New returns a Client for destination (host:port). A query not answered within timeout
// fails; its id stays reserved for another timeout, so an answer arriving that late is
// dropped instead of reaching the query that reuses the id. The UDP sockets are read by
// poller, nil for one of the Client's own: a goroutine that also reads the sockets the
// queries come from (the UDP gate's) relays faster (rawudp.Poller).
func New(destination string, timeout time.Duration, poller *rawudp.Poller) *Client {
	if poller == nil {
		poller = new(rawudp.Poller)
	}
	c := &Client{destination: destination, timeout: timeout, poller: poller}
	for i := range c.udp {
		c.udp[i].client = c
	}
	c.tcp.client = c
	c.tcp.conns.MaxIdle, c.tcp.conns.IdleTimeout = maxIdleTCP, idleTimeout
	return c
}

// Answer is an upstream answer in a pooled buffer.
type Answer struct {
	Bytes []byte
	buf   *[]byte
}

// Release gives the buffer back; Bytes must not be used afterwards.
func (a *Answer) Release() {
	if a != nil && a.buf != nil {
		putBuffer(a.buf)
		a.buf, a.Bytes = nil, nil
	}
}

// Exchange sends query (a packed DNS message with one question) over UDP or TCP, as the
// client used, and returns the answer to it with query's id. Over UDP a truncated answer is
// returned as it is: the client retries over TCP itself (RFC 7766 §5). The query's
// bytes are not kept.
func (c *Client) Exchange(ctx context.Context, query []byte, tcp bool) (*Answer, error) {
	q, err := parseQuery(query)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	network := "udp"
	var a *Answer
	if tcp {
		network = "tcp"
		a, err = c.tcp.exchange(ctx, query, q)
	} else {
		a, err = c.pick().exchange(ctx, query, q)
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("no answer within %v: %w", c.timeout, err)
		}
		return nil, c.failed(network, err)
	}
	a.Bytes[0], a.Bytes[1] = query[0], query[1]
	return a, nil
}

// Replier takes the answer to a query relayed with Send, or why there is none.
type Replier interface {
	// Reply is called once, from the reader of the socket the query went out on: answer
	// holds the answer with the query's id, or err says why there is no answer (the
	// timeout passed, the destination refused). The reader flushes out after the answers
	// it read at once, so a Replier that writes answer to a client adds it to out: answer
	// stays valid until then.
	Reply(answer []byte, err error, out *rawudp.Outbox)
}

// Send relays query over UDP without waiting for the answer: r gets it. It saves the
// waiting goroutine, its timer and the handoff to it that Exchange costs. query must stay
// unchanged until r is called. An error means r is never called.
func (c *Client) Send(query []byte, r Replier) error {
	q, err := parseQuery(query)
	if err != nil {
		return err
	}
	call := &call{q: q, reply: r, clientID: binary.BigEndian.Uint16(query), deadline: time.Now().Add(c.timeout)}
	if err := c.pick().send(query, call); err != nil {
		return c.failed("udp", err)
	}
	return nil
}

// pick returns the UDP socket with the fewest queries waiting, the next in turn among
// equals, as dnsdist's default policy picks a server (leastOutstanding,
// dnsdist.org/guides/serverselection.html). A socket whose answers come back slower, because
// the server's thread behind it is busy or stuck (udpSockets), gets no more queries until
// the others have as many waiting; in turn, one socket in four would carry a quarter of
// the queries into its wait. At 16 clients in issue 15's bench the two relay alike
// (bench/README.md, Passthrough).
func (c *Client) pick() *udpSocket {
	first := c.next.Add(1)
	best := &c.udp[first%udpSockets]
	least := best.inflight.Load()
	for i := uint32(1); i < udpSockets && least > 0; i++ {
		s := &c.udp[(first+i)%udpSockets]
		if n := s.inflight.Load(); n < least {
			best, least = s, n
		}
	}
	return best
}

// failed says which relaying failed, and why.
func (c *Client) failed(network string, err error) error {
	return fmt.Errorf("query %s over %s: %w", c.destination, network, err)
}

// buffers holds message buffers; most answers fit the initial size.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// getBuffer returns a pooled buffer of length n.
func getBuffer(n int) *[]byte {
	b := buffers.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

func putBuffer(b *[]byte) { buffers.Put(b) }

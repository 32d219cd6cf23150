package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/dnsagent/dnsagent/internal/connpool"
)

// tcpPool keeps TCP connections to the destination open between queries. A connection
// carries one query at a time and goes back to the pool only after a complete, matching
// answer, so nothing of an earlier query can be read as the answer to a later one.
type tcpPool struct {
	client *Client
	conns  connpool.Pool[struct{}] // one destination
}

// exchange sends query over a pooled connection, or a new one. A pooled connection the
// server closed meanwhile (named closes idle ones) fails at once; the query is then sent
// again on a new connection: queries are idempotent.
func (p *tcpPool) exchange(ctx context.Context, query []byte, q question) (*Answer, error) {
	if conn := p.conns.Get(struct{}{}); conn != nil {
		a, err := p.roundTrip(ctx, conn, query, q)
		if err == nil || ctx.Err() != nil {
			return a, err
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.client.destination)
	if err != nil {
		return nil, err
	}
	return p.roundTrip(ctx, conn, query, q)
}

// roundTrip writes query on conn with a fresh id and reads the answer. conn goes back to
// the pool after a matching answer and is closed on any failure.
func (p *tcpPool) roundTrip(ctx context.Context, conn net.Conn, query []byte, q question) (*Answer, error) {
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline) //nolint:errcheck // shows up as an I/O error
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck
	id := uint16(rand.Uint32())
	out := getBuffer(2 + len(query)) // RFC 1035 §4.2.2: two-octet length prefix
	binary.BigEndian.PutUint16(*out, uint16(len(query)))
	copy((*out)[2:], query)
	binary.BigEndian.PutUint16((*out)[2:], id)
	fail := func(err error) (*Answer, error) {
		stop()
		conn.Close()
		return nil, err
	}
	_, err := conn.Write(*out)
	putBuffer(out)
	if err != nil {
		return fail(err)
	}
	var length [2]byte
	if _, err := io.ReadFull(conn, length[:]); err != nil {
		return fail(err)
	}
	b := getBuffer(int(binary.BigEndian.Uint16(length[:])))
	if _, err := io.ReadFull(conn, *b); err != nil {
		putBuffer(b)
		return fail(err)
	}
	if !answers(*b, id, q) {
		putBuffer(b)
		return fail(errors.New("the answer does not match the query"))
	}
	if stop() {
		p.conns.Put(struct{}{}, conn)
	} else { // cancelled meanwhile: the deadline may be set to the past at any moment
		conn.Close()
	}
	return &Answer{Bytes: *b, buf: b}, nil
}

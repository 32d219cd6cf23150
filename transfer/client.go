package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Client talks to primaries over TCP: SOA queries and zone transfers. A transfer is
// bounded by a stall timeout per message rather than a wall clock, so a large zone that
// keeps flowing is never cut, and a primary that stops sending is.
type Client struct {
	Source       netip.Addr    // local address to send from (transfer_source); zero: any
	DialTimeout  time.Duration // connect timeout
	StallTimeout time.Duration // longest wait for the next message
}

func (c *Client) dial(ctx context.Context, master netip.AddrPort) (*dns.Conn, error) {
	dialer := net.Dialer{Timeout: c.DialTimeout}
	if c.Source.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: c.Source.AsSlice()}
	}
	conn, err := dialer.DialContext(ctx, "tcp", master.String())
	if err != nil {
		return nil, err
	}
	// Cancelling the context (shutdown, DELETE of the zone) must interrupt a blocked read.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return &dns.Conn{Conn: &stoppableConn{Conn: conn, stop: stop}}, nil
}

// stoppableConn releases its context hook when closed.
type stoppableConn struct {
	net.Conn
	stop func() bool
}

func (c *stoppableConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

func (c *Client) exchange(conn *dns.Conn, req *dns.Msg) (*dns.Msg, error) {
	deadline := time.Now().Add(c.StallTimeout)
	conn.SetDeadline(deadline) //nolint:errcheck // a failed deadline shows up as a read error
	if err := conn.WriteMsg(req); err != nil {
		return nil, err
	}
	return c.read(conn, req.Id)
}

func (c *Client) read(conn *dns.Conn, id uint16) (*dns.Msg, error) {
	conn.SetReadDeadline(time.Now().Add(c.StallTimeout)) //nolint:errcheck // see exchange
	msg, err := conn.ReadMsg()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("primary closed the connection")
		}
		return nil, err
	}
	if msg.Id != id || !msg.Response {
		return nil, fmt.Errorf("reply does not match the request (id %d, want %d)", msg.Id, id)
	}
	if msg.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("primary answered %s", dns.RcodeToString[msg.Rcode])
	}
	return msg, nil
}

// SOA asks master for the zone's serial over TCP. The answer must be authoritative.
func (c *Client) SOA(ctx context.Context, master netip.AddrPort, zone string) (uint32, error) {
	conn, err := c.dial(ctx, master)
	if err != nil {
		return 0, fmt.Errorf("SOA %s from %s: %w", zone, master, err)
	}
	defer conn.Close()
	req := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	req.RecursionDesired = false
	msg, err := c.exchange(conn, req)
	if err != nil {
		return 0, fmt.Errorf("SOA %s from %s: %w", zone, master, err)
	}
	if !msg.Authoritative {
		return 0, fmt.Errorf("SOA %s from %s: the answer is not authoritative (is the zone configured there?)", zone, master)
	}
	for _, rr := range msg.Answer {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, zone) {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("SOA %s from %s: no SOA record in the answer", zone, master)
}

// AXFR starts a full transfer of zone from master and reads its first message, so the
// new serial is known before anything is applied. The returned stream yields the records
// (SOA first, the closing SOA left out) as a backend.Source; it returns io.EOF only after
// the closing SOA arrived, so a cut transfer always ends in an error.
func (c *Client) AXFR(ctx context.Context, master netip.AddrPort, zone string) (*Stream, error) {
	conn, err := c.dial(ctx, master)
	if err != nil {
		return nil, fmt.Errorf("AXFR %s from %s: %w", zone, master, err)
	}
	req := new(dns.Msg).SetAxfr(zone)
	s := &Stream{client: c, conn: conn, zone: zone, master: master, id: req.Id}
	msg, err := c.exchange(conn, req)
	if err == nil {
		err = s.take(msg)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("AXFR %s from %s: %w", zone, master, err)
	}
	return s, nil
}

// Stream is a zone transfer being read. It checks what a complete, valid transfer must
// be: it starts with the zone's SOA, every name is inside the zone, and it ends with the
// same SOA.
type Stream struct {
	client *Client
	conn   *dns.Conn
	zone   string
	master netip.AddrPort
	id     uint16

	soa     *dns.SOA
	batch   []dns.RR // records of the message read but not yet returned
	done    bool     // the closing SOA was seen
	Records int      // records received so far, closing SOA excluded
	Bytes   int      // wire bytes received so far
}

// Serial is the serial of the zone being transferred.
func (s *Stream) Serial() uint32 { return s.soa.Serial }

// Next implements backend.Source.
func (s *Stream) Next() ([]dns.RR, error) {
	for s.batch == nil {
		if s.done {
			s.Close()
			return nil, io.EOF
		}
		msg, err := s.client.read(s.conn, s.id)
		if err == nil {
			err = s.take(msg)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("AXFR %s from %s: after %d records: %w", s.zone, s.master, s.Records, err)
		}
	}
	batch := s.batch
	s.batch = nil
	return batch, nil
}

// take checks one message of the transfer and keeps its records for Next.
func (s *Stream) take(msg *dns.Msg) error {
	s.Bytes += msg.Len()
	var batch []dns.RR
	for i, rr := range msg.Answer {
		if s.done {
			return errors.New("records after the closing SOA")
		}
		hdr := rr.Header()
		if !dns.IsSubDomain(s.zone, hdr.Name) {
			return fmt.Errorf("record %q is outside the zone", hdr.Name)
		}
		soa, isSOA := rr.(*dns.SOA)
		switch {
		case s.soa == nil && (!isSOA || i != 0 || !strings.EqualFold(hdr.Name, s.zone)):
			return errors.New("the transfer does not start with the zone's SOA")
		case s.soa == nil:
			s.soa = soa
		case isSOA && strings.EqualFold(hdr.Name, s.zone):
			if soa.Serial != s.soa.Serial {
				return fmt.Errorf("closing SOA serial %d differs from the opening %d", soa.Serial, s.soa.Serial)
			}
			s.done = true
			continue
		}
		batch = append(batch, rr)
	}
	if s.soa == nil {
		return errors.New("the first message carries no records")
	}
	s.Records += len(batch)
	if len(batch) > 0 {
		s.batch = batch
	}
	return nil
}

// Close releases the connection; Next closes it itself at the end or on an error.
func (s *Stream) Close() {
	s.conn.Close()
}

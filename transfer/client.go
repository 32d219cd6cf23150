package transfer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/internal/connpool"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
)

// Client talks to primaries over TCP: SOA queries and zone transfers. A transfer must make
// progress: at least one record every StallTimeout (a stream of empty messages is no
// progress), and it must end within MaxDuration, so a hostile or broken primary holds a
// worker for a bounded time; the caps bound what it can make the agent store.
type Client struct {
	Source       netip.Addr    // local address to send from (transfer_source); zero: any
	DialTimeout  time.Duration // connect timeout
	StallTimeout time.Duration // longest wait for the next record
	MaxDuration  time.Duration // longest transfer, start to end; 0: no limit
	Key          *tsigkey.Key  // signs every request and verifies every reply, if set
	MaxRecords   int           // a transfer with more records is refused; 0: no limit
	MaxBytes     int           // a transfer with more wire bytes is refused; 0: no limit
	SpoolDir     string        // where large IXFR change sets spill (SpoolChangeSet); "": os.TempDir
	// Pace, when set, waits for master's turn under max_checks_per_second before a
	// request asked again after a SERVFAIL: each request counts against the cap.
	Pace func(ctx context.Context, master netip.AddrPort) error

	conns *connpool.Pool[netip.AddrPort] // idle connections by master (reuse, below); nil: none kept
}

// Connections to the masters are reused (RFC 7766 §6.2.1; RFC 5936 §4.1 has a primary
// take several requests on one connection). With a connection for every SOA query and
// transfer, each left its local port in TIME_WAIT for 60 s when the agent closed it: a
// burst of CREATEs ran out of the 28,232 ephemeral ports (ip_local_port_range) after
// 28,227 zones and answered the rest SERVFAIL, on any path but loopback, where the kernel
// reuses such ports itself (tcp_tw_reuse=2; issue 15, measured with it off). A primary
// that serves one request a connection and closes it is asked again on a new connection.
const (
	// maxIdlePerMaster bounds the idle connections kept to one master: more than the
	// transfers and checks that run at once (workers).
	maxIdlePerMaster = 16
	// idleConnTimeout closes an idle connection, below MiniDNS's tcp_recv_timeout (0.5 s
	// by default, designate/service.py), which closes a connection idle that long with a
	// log line each: the agent closes first, as it would have without reuse.
	idleConnTimeout = 300 * time.Millisecond
)

// newConnPool returns the pool of a Client that reuses connections.
func newConnPool() *connpool.Pool[netip.AddrPort] {
	return &connpool.Pool[netip.AddrPort]{MaxIdle: maxIdlePerMaster, IdleTimeout: idleConnTimeout}
}

// session is one TCP exchange with a master: a request and the messages answering it.
type session struct {
	client  *Client
	ctx     context.Context
	cancel  context.CancelFunc // Interrupt: closes the connection, so a blocked read returns
	conn    *stoppableConn
	in      *bufio.Reader
	readers *backend.ReaderPool // in came from there, and goes back at Close
	request []byte              // as sent, length prefix included: sent again on a new connection
	reused  bool                // conn came from the pool and nothing was read on it yet
	// finished: the whole answer was read, so the connection may carry another request.
	finished, closed bool
	buf              []byte
	zone             string
	master           netip.AddrPort
	id               uint16
	tsig             *tsigChain // verifies the replies when the client has a key

	Records int // records received, for the caps and the transfer summary
	Bytes   int // wire bytes received

	progress time.Time // when the last record arrived (or the request was sent)
	deadline time.Time // start + MaxDuration; zero: none
	empty    int       // messages without records since the last record
}

// Read buffers: a SOA answer is small, and a message larger than the buffer is read
// straight into s.buf anyway (bufio skips its buffer for large reads). A burst of CREATEs
// opens two sessions per zone, and 64 KiB buffers each cost more than a small zone's
// transfer (issue 15); a transfer's buffer still takes several messages a read. 28 KiB,
// not 32: Go allocates 32 KiB and more as large objects, a span of their own each, which
// costs a burst of small transfers more than the size suggests.
var (
	soaReaders      = &backend.ReaderPool{Size: 4 << 10}
	transferReaders = &backend.ReaderPool{Size: 28 << 10}
)

// open sends req to master, signed when the client has a key, on an idle connection to
// it if there is one, else on a new one.
func (c *Client) open(ctx context.Context, master netip.AddrPort, req *dns.Msg, readers *backend.ReaderPool) (*session, error) {
	s := &session{client: c, readers: readers, zone: req.Question[0].Name, master: master, id: req.Id}
	s.ctx, s.cancel = context.WithCancel(ctx)
	if c.MaxDuration > 0 {
		s.deadline = time.Now().Add(c.MaxDuration)
	}
	packed, err := s.pack(req)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.request = append(binary.BigEndian.AppendUint16(nil, uint16(len(packed))), packed...)
	if conn := c.conns.Get(master); conn != nil && s.send(conn, true) == nil {
		return s, nil
	}
	if err := s.dial(); err != nil {
		s.cancel()
		return nil, err
	}
	return s, nil
}

// dial sends the request on a new connection.
func (s *session) dial() error {
	dialer := net.Dialer{Timeout: s.client.DialTimeout}
	if s.client.Source.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: s.client.Source.AsSlice()}
	}
	conn, err := dialer.DialContext(s.ctx, "tcp", s.master.String())
	if err != nil {
		return err
	}
	return s.send(conn, false)
}

// send sends the request on conn (closed if that fails).
func (s *session) send(conn net.Conn, reused bool) error {
	// Cancelling the context (shutdown, DELETE of the zone) must interrupt a blocked read.
	stop := context.AfterFunc(s.ctx, func() { conn.Close() })
	s.conn, s.reused = &stoppableConn{Conn: conn, stop: stop}, reused
	if s.in == nil {
		s.in = s.readers.Get(conn)
	} else {
		s.in.Reset(conn) // sent again on a new connection
	}
	s.progress = time.Now()
	conn.SetWriteDeadline(s.progress.Add(s.client.StallTimeout)) //nolint:errcheck // shows up as a write error
	if _, err := conn.Write(s.request); err != nil {
		s.conn.Close()
		return err
	}
	return nil
}

func (s *session) pack(req *dns.Msg) ([]byte, error) {
	key := s.client.Key
	if key == nil {
		return req.Pack()
	}
	req.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	packed, mac, err := dns.TsigGenerate(req, key.Secret, "", false)
	if err != nil {
		return nil, err
	}
	s.tsig, err = newTSIGChain(key, mac)
	return packed, err
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

// Close ends the session. The connection goes back to the pool if the whole answer was
// read and nothing more came, else it is closed. Close must not run while a read of the
// session runs on another goroutine (its read buffer goes back to the pool): Interrupt is
// for that.
func (s *session) Close() {
	if s.closed {
		return
	}
	s.closed = true
	if s.finished && s.in.Buffered() == 0 && s.conn.stop() { // else the context ended: closing
		s.client.conns.Put(s.master, s.conn.Conn)
	} else {
		s.conn.Close()
	}
	s.readers.Put(s.in)
	s.in = nil
	s.cancel()
}

// Interrupt makes a read of the session that runs on another goroutine, or the next one,
// fail: it closes the connection. Unlike Close it may run concurrently with a read; the
// reading side still closes the session once the read has returned.
func (s *session) Interrupt() { s.cancel() }

var (
	// errPrimaryClosed: the primary closed the connection before the answer was complete.
	errPrimaryClosed = errors.New("primary closed the connection")
	// errSessionClosed: a read after the session ended (after an error, or at its end).
	errSessionClosed = errors.New("transfer session already closed")
)

// read returns the next message, checked: it answers the request, with NOERROR, within
// the caps, properly signed when a key is used, and its answer records are in the zone.
// The first read on a reused connection the primary closed meanwhile sends the request
// again on a new one.
func (s *session) read() (*dns.Msg, error) {
	if s.closed { // its read buffer went back to the pool
		return nil, errSessionClosed
	}
	msg, err := s.readMessage()
	if err != nil && s.reused && s.ctx.Err() == nil &&
		(errors.Is(err, errPrimaryClosed) || errors.Is(err, syscall.ECONNRESET)) {
		s.conn.Close()
		if err := s.dial(); err != nil {
			return nil, err
		}
		return s.readMessage()
	}
	s.reused = false
	return msg, err
}

func (s *session) readMessage() (*dns.Msg, error) {
	// The stall clock runs from the last record, not the last message: messages without
	// records do not keep a transfer alive.
	deadline, overall := s.progress.Add(s.client.StallTimeout), false
	if !s.deadline.IsZero() && s.deadline.Before(deadline) {
		deadline, overall = s.deadline, true
	}
	s.conn.SetReadDeadline(deadline) //nolint:errcheck // shows up as a read error
	var length [2]byte
	if _, err := io.ReadFull(s.in, length[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errPrimaryClosed
		}
		return nil, s.timeout(err, overall)
	}
	n := int(binary.BigEndian.Uint16(length[:]))
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	s.buf = s.buf[:n]
	if _, err := io.ReadFull(s.in, s.buf); err != nil {
		return nil, fmt.Errorf("reading a %d-byte message: %w", n, s.timeout(err, overall))
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(s.buf); err != nil {
		return nil, fmt.Errorf("malformed message: %w", err)
	}
	if msg.Id != s.id || !msg.Response {
		return nil, fmt.Errorf("reply does not match the request (id %d, want %d)", msg.Id, s.id)
	}
	if err := s.verify(msg); err != nil {
		return nil, err
	}
	if msg.Rcode != dns.RcodeSuccess {
		return nil, rcodeError(msg.Rcode)
	}
	s.Bytes += n
	s.Records += len(msg.Answer)
	if len(msg.Answer) > 0 {
		s.progress, s.empty = time.Now(), 0
	} else {
		s.empty++
	}
	if max := s.client.MaxRecords; max > 0 && s.Records > max {
		return nil, fmt.Errorf("more than max_zone_records (%d) records", max)
	}
	if max := s.client.MaxBytes; max > 0 && s.Bytes > max {
		return nil, fmt.Errorf("more than max_transfer_bytes (%d) bytes", max)
	}
	for _, rr := range msg.Answer {
		if !backend.InZone(s.zone, rr.Header().Name) {
			return nil, fmt.Errorf("record %q is outside the zone", rr.Header().Name)
		}
		if err := backend.CheckRecord(s.zone, rr); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// timeout names the limit a read deadline enforced; other errors pass unchanged.
func (s *session) timeout(err error, overall bool) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return err
	}
	if overall {
		return fmt.Errorf("the transfer took longer than transfer_max_duration (%s): %w", s.client.MaxDuration, err)
	}
	if s.empty > 0 {
		return fmt.Errorf("no record for transfer_stall_timeout (%s), %d empty messages: %w", s.client.StallTimeout, s.empty, err)
	}
	return fmt.Errorf("no record for transfer_stall_timeout (%s): %w", s.client.StallTimeout, err)
}

// verify checks the TSIG of a reply (see tsigChain).
func (s *session) verify(msg *dns.Msg) error {
	switch {
	case s.tsig != nil:
		return s.tsig.verify(s.buf, msg)
	case msg.IsTsig() != nil:
		return errors.New("signed reply to an unsigned request")
	}
	return nil
}

// complete is called when the answer's last record was read: it must not end in unsigned
// messages.
func (s *session) complete() error {
	if s.tsig == nil {
		return nil
	}
	return s.tsig.complete()
}

// rcodeError is a reply's error rcode.
type rcodeError int

func (e rcodeError) Error() string { return "primary answered " + dns.RcodeToString[int(e)] }

// SOA asks master for the zone's SOA over TCP. The answer must be authoritative.
func (c *Client) SOA(ctx context.Context, master netip.AddrPort, zone string) (*dns.SOA, error) {
	req := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	req.RecursionDesired = false
	s, err := c.open(ctx, master, req, soaReaders)
	if err != nil {
		return nil, fmt.Errorf("SOA %s from %s: %w", zone, master, err)
	}
	defer s.Close()
	msg, err := s.read()
	if err != nil {
		return nil, fmt.Errorf("SOA %s from %s: %w", zone, master, err)
	}
	s.finished = true // the answer is one message
	if !msg.Authoritative {
		return nil, fmt.Errorf("SOA %s from %s: the answer is not authoritative (is the zone configured there?)", zone, master)
	}
	for _, rr := range msg.Answer {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, zone) {
			return soa, nil
		}
	}
	return nil, fmt.Errorf("SOA %s from %s: no SOA record in the answer", zone, master)
}

// transferPauses are the waits before a transfer answered SERVFAIL is asked for again. A
// primary answers SERVFAIL when it already runs as many outgoing transfers as it allows
// (named: transfers-out, 10 by default), and named gives a transfer's slot back only
// after its client has the last message: a secondary that starts its next transfer at
// once, more so on a reused connection, now and then found none (73 of 16,000 small AXFRs
// with 8 at a time; none with transfers-out 100). 375 ms in all.
var transferPauses = []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}

// startTransfer sends a transfer request and reads the first message of its answer,
// asking again after a pause while the primary answers SERVFAIL (transferPauses).
func (c *Client) startTransfer(ctx context.Context, master netip.AddrPort, req *dns.Msg) (*session, *dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		s, err := c.open(ctx, master, req, transferReaders)
		if err != nil {
			return nil, nil, err
		}
		msg, err := s.read()
		if err == nil {
			return s, msg, nil
		}
		s.Close()
		if rc := rcodeError(0); attempt == len(transferPauses) || !errors.As(err, &rc) || rc != dns.RcodeServerFailure {
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(transferPauses[attempt]):
		}
		if c.Pace != nil {
			if err := c.Pace(ctx, master); err != nil {
				return nil, nil, err
			}
		}
	}
}

// AXFR starts a full transfer of zone from master and reads its first message, so the
// new serial is known before anything is applied.
func (c *Client) AXFR(ctx context.Context, master netip.AddrPort, zone string) (*Stream, error) {
	s, msg, err := c.startTransfer(ctx, master, new(dns.Msg).SetAxfr(zone))
	if err != nil {
		// A CREATE with one master asks no SOA first: the AXFR is what finds a zone the
		// master does not serve.
		hint := ""
		if rc := rcodeError(0); errors.As(err, &rc) && (rc == dns.RcodeNotAuth || rc == dns.RcodeRefused) {
			hint = " (is the zone configured there, and may this agent transfer it?)"
		}
		return nil, fmt.Errorf("AXFR %s from %s: %w%s", zone, master, err, hint)
	}
	stream, err := newStream(s, "AXFR", msg.Answer)
	if err != nil {
		s.Close()
		return nil, err
	}
	return stream, nil
}

// Stream is a full zone being transferred, readable as a backend.Source: records come in
// batches, SOA first, the closing SOA left out. It checks what a complete transfer must
// be: it starts with the zone's SOA and ends with the same SOA; so io.EOF comes only after
// the closing SOA, and a cut transfer always ends in an error.
type Stream struct {
	*session
	kind  string // AXFR, or IXFR when the primary answered an IXFR with the full zone
	soa   *dns.SOA
	batch []dns.RR // records read but not yet returned
	done  bool     // the closing SOA was seen
}

// newStream starts a stream on a session whose first records were already read.
func newStream(s *session, kind string, first []dns.RR) (*Stream, error) {
	soa, ok := firstSOA(first, s.zone)
	if !ok {
		return nil, fmt.Errorf("%s %s from %s: the transfer does not start with the zone's SOA", kind, s.zone, s.master)
	}
	st := &Stream{session: s, kind: kind, soa: soa}
	if err := st.take(first[1:]); err != nil {
		return nil, st.fail(err)
	}
	st.batch = append([]dns.RR{soa}, st.batch...)
	return st, nil
}

func firstSOA(rrs []dns.RR, zone string) (*dns.SOA, bool) {
	if len(rrs) == 0 {
		return nil, false
	}
	soa, ok := rrs[0].(*dns.SOA)
	return soa, ok && strings.EqualFold(soa.Hdr.Name, zone)
}

// zoneRecords counts the zone's records received, the closing SOA left out.
func (st *Stream) zoneRecords() int {
	if st.done {
		return st.Records - 1
	}
	return st.Records
}

// Serial is the serial of the zone being transferred.
func (st *Stream) Serial() uint32 { return st.soa.Serial }

// Next implements backend.Source.
func (st *Stream) Next() ([]dns.RR, error) {
	for st.batch == nil {
		if st.done {
			st.Close()
			return nil, io.EOF
		}
		msg, err := st.read()
		if err == nil {
			err = st.take(msg.Answer)
		}
		if err != nil {
			st.Close()
			return nil, st.fail(err)
		}
	}
	batch := st.batch
	st.batch = nil
	return batch, nil
}

func (st *Stream) fail(err error) error {
	return fmt.Errorf("%s %s from %s: after %d records: %w", st.kind, st.zone, st.master, st.Records, err)
}

// take keeps the records of one message for Next, watching for the closing SOA.
func (st *Stream) take(rrs []dns.RR) error {
	var batch []dns.RR
	for _, rr := range rrs {
		if st.done {
			return errors.New("records after the closing SOA")
		}
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, st.zone) {
			if soa.Serial != st.soa.Serial {
				return fmt.Errorf("closing SOA serial %d differs from the opening %d", soa.Serial, st.soa.Serial)
			}
			st.done = true
			continue
		}
		batch = append(batch, rr)
	}
	if st.done {
		if err := st.complete(); err != nil {
			return err
		}
		st.finished = true
	}
	if len(batch) > 0 {
		st.batch = batch
	}
	return nil
}

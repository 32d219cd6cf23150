package service

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/internal/rawudp"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP request path bounds (README, Security). miekg/dns starts one goroutine per datagram
// it reads and nothing caps them: under a flood they pile up faster than they end (issue
// 14: 211k goroutines, 2.9 GB in 60 s). The gate reads the socket itself, queues what it
// read, and hands a server a datagram only while it serves fewer than its slots.
const (
	udpSlotsAllowed = 128              // datagrams from allowed sources served at once (goroutines); slow kinds are capped lower (middleware.Busy)
	udpSlotsOthers  = 2                // datagrams from other sources served at once: they are only ever refused
	udpPaceOthers   = time.Millisecond // and at most one per this: a flood of them must not take the CPU the reads need
	udpSourceRate   = 50000            // datagrams per second one allowed source may send (burst: a second's worth); more are dropped unread
	udpCommandRate  = 10000            // CREATE/DELETEs, counted apart: each may cost a transfer. Above the agent's own create rate (at most 2,985 small zones/s measured, README Security), so a worker waiting for its replies is never cut
	udpQueueAllowed = 1024             // queued datagrams from sources in allow_notify or allow_query
	udpQueueOthers  = 256              // queued datagrams from everyone else
	udpMaxDatagram  = 65535
	udpMaxControl   = 128 // a datagram's control messages: packet info (IP_PKTINFO, IPV6_PKTINFO)
	udpReadBatch    = 16  // datagrams read with one system call (rawudp.Batch)
	udpSocketBuffer = 4 << 20

	// Slow kinds served at once, over UDP and TCP together (middleware.Busy): below
	// udpSlotsAllowed, so a flood of them leaves slots to NOTIFYs.
	maxCommandsServing = 64
	maxQueriesServing  = 48
)

// The gate's per-source limits, as the kind label of dnsagent_rate_limited_total.
const (
	limitDatagrams = "udp"
	limitCommands  = "udp_command"
)

// gateLimits are the rates of the gate's per-source limits.
var gateLimits = map[string]float64{limitDatagrams: udpSourceRate, limitCommands: udpCommandRate}

// newDroppedCounter makes an agent's udp_dropped_total, which its gates share.
func newDroppedCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dnsagent", Name: "udp_dropped_total",
		Help: "Datagrams dropped unread because the request queue was full, by queue (allowed, others).",
	}, []string{"queue"})
}

// udpGate sits between a UDP listener and two miekg/dns servers on it (as their
// DecorateReader): the poller's goroutine reads its sockets (steer.go) into two bounded
// queues, one for sources in an allow list and one for the others, and each server takes datagrams off
// its own queue only while it serves fewer than its lane's slots. A slot is given back
// when the request is answered or dropped (release). So strangers never hold the slots
// of the allowed sources, nor more than a few goroutines, and are paced. Within a queue
// sources are served in turn and none may hold more than a quarter of it, so a flooding
// source waits behind its own datagrams; an allowed source is also held to gateLimits.
// What does not fit is dropped unread: a flood costs a bounded queue, never goroutines.
type udpGate struct {
	conns   []*net.UDPConn
	raw     []*rawudp.Conn // conns' own: the gate reads with them, and replies leave through them
	allowed func(netip.Addr) bool
	limit   *middleware.Limiter // gateLimits on allowed sources
	poller  *rawudp.Poller      // calls readable when a socket has datagrams
	start   sync.Once
	mu      sync.Mutex
	stopped bool          // reading ended: done is closed, err says why
	unpoll  []func()      // take the sockets out of the poller
	done    chan struct{} // closed when reading ended
	err     error
	lanes   [2]*gateLane // allowed sources, others
	// fast, if set, relays a datagram from an allowed source at once, without the
	// queue, a server goroutine or the chain, and reports whether it took it
	// (fastquery.go). The datagram came from `from` (source: its address, unmapped) with
	// the control messages oob on sock, which its reply leaves through.
	fast func(sock *rawudp.Conn, msg []byte, from netip.AddrPort, source netip.Addr, oob []byte) bool
}

// gateLane is one queue of the gate and the slots of the server that serves it.
type gateLane struct {
	gate   *udpGate
	slots  chan struct{}
	wake   chan struct{} // a datagram was queued
	pace   time.Duration // at least this long between two datagrams taken
	nextAt time.Time     // when the next may be taken (pace); only the server loop reads it

	mu sync.Mutex
	q  queue
}

// newUDPGate returns the gate of conns, counting what its queues drop in dropped (by
// queue); poller reads them (nil: a Poller of the gate's own), and should also read the
// relay's sockets (rawudp.Poller says why).
func newUDPGate(conns []*net.UDPConn, allowed func(netip.Addr) bool, limit *middleware.Limiter,
	dropped *prometheus.CounterVec, poller *rawudp.Poller) (*udpGate, error) {
	if poller == nil {
		poller = new(rawudp.Poller)
	}
	g := &udpGate{conns: conns, allowed: allowed, limit: limit, poller: poller, done: make(chan struct{})}
	for _, conn := range conns {
		raw, err := rawudp.New(conn)
		if err != nil {
			return nil, fmt.Errorf("UDP socket %s: %w", conn.LocalAddr(), err)
		}
		g.raw = append(g.raw, raw)
		// A larger socket buffer rides out the moments the reader does not run (the
		// kernel caps it at net.core.rmem_max); best effort.
		conn.SetReadBuffer(udpSocketBuffer) //nolint:errcheck
		// Each datagram's destination address, so that a reply from a wildcard address
		// leaves from the address asked (rawudp.ReplyControl); one of the two families
		// fails, as it may.
		ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) //nolint:errcheck
		ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) //nolint:errcheck
	}
	lane := func(slots, size int, pace time.Duration, name string) *gateLane {
		return &gateLane{gate: g, slots: make(chan struct{}, slots), wake: make(chan struct{}, 1), pace: pace,
			q: newQueue(size, dropped.WithLabelValues(name))}
	}
	g.lanes = [2]*gateLane{lane(udpSlotsAllowed, udpQueueAllowed, 0, "allowed"),
		lane(udpSlotsOthers, udpQueueOthers, udpPaceOthers, "others")}
	return g, nil
}

// read has the poller fill the queues from the gate's sockets, until one fails or the
// servers shut down (stopReading).
func (g *udpGate) read() {
	if err := g.poll(); err != nil {
		g.stopReading(err)
	}
}

// poll puts the gate's sockets in the poller.
func (g *udpGate) poll() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, raw := range g.raw {
		if g.stopped {
			return nil
		}
		batch := raw.NewBatch(udpReadBatch, udpMaxDatagram, udpMaxControl)
		unpoll, err := g.poller.Add(raw, func() { g.readable(i, batch) })
		if err != nil {
			return fmt.Errorf("reading the UDP socket %s: %w", g.conns[i].LocalAddr(), err)
		}
		g.unpoll = append(g.unpoll, unpoll)
	}
	return nil
}

// readable takes the datagrams waiting on the gate's socket i, from the poller's
// goroutine, for a turn (rawudp.Turn): then the poller's other sockets are read (the
// relay's upstream sockets, the gate's other ones).
func (g *udpGate) readable(i int, batch *rawudp.Batch) {
	err := batch.Drain(func(n int) {
		for j := range n {
			msg, oob, from := batch.Datagram(j)
			g.take(i, msg, oob, from)
		}
	})
	if err != nil {
		g.stopReading(fmt.Errorf("reading the UDP socket %s: %w", g.conns[i].LocalAddr(), err))
	}
}

// stopReading ends the reading of every socket of the gate, for err: the servers then
// stop (err is not a net.Error, so they do not retry), and the sockets they do not close
// themselves (all but the first) are closed.
func (g *udpGate) stopReading(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.stopped, g.err = true, err
	for _, unpoll := range g.unpoll {
		unpoll()
	}
	close(g.done)
	for _, c := range g.conns[1:] {
		c.Close()
	}
}

// take queues or relays one datagram read on the gate's socket i.
func (g *udpGate) take(i int, msg, oob []byte, from netip.AddrPort) {
	// Shorter than a header: the server would only drop it. QR set: a response, never
	// answered (reflection loops), as middleware.AcceptRequests says; it is the only
	// verdict but accept that function gives, so every datagram a server takes reaches
	// its handler or its invalid-message hook, and gives its slot back there.
	if len(msg) < 12 || msg[2]&0x80 != 0 {
		return
	}
	source := from.Addr().Unmap()
	l := g.lanes[1]
	if g.allowed(source) {
		// An allowed source that floods is cut to a rate no deployment reaches, so the
		// CPU its requests take stays bounded and this loop keeps reading.
		kind := limitDatagrams
		if msg[2]>>3&0xf == request.OpcodeCC {
			kind = limitCommands
		}
		if !g.limit.Allow(source, kind) {
			return
		}
		l = g.lanes[0]
		if g.fast != nil && g.fast(g.raw[i], msg, from, source, oob) {
			return
		}
	}
	l.mu.Lock()
	queued := l.q.room(source)
	if queued { // copied only when queued: a dropped datagram costs the read alone
		from := &udpSource{from: from, control: rawudp.ReplyControl(oob)}
		l.q.push(datagram{msg: append([]byte(nil), msg...), from: from, source: source})
	}
	l.mu.Unlock()
	if !queued {
		l.q.dropped.Inc()
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Decorate is the lane's server's DecorateReader.
func (l *gateLane) Decorate(r dns.Reader) dns.Reader { return gateReader{Reader: r, lane: l} }

// release gives back the slot of a datagram the server took.
func (l *gateLane) release() { <-l.slots }

// next takes a slot, then the lane's first datagram.
func (l *gateLane) next(timeout time.Duration) ([]byte, net.Addr, error) {
	g := l.gate
	g.start.Do(g.read) // once a server serves
	expired := time.NewTimer(timeout)
	defer expired.Stop()
	select {
	case l.slots <- struct{}{}:
	case <-g.done:
		return nil, nil, g.err
	case <-expired.C:
		return nil, nil, errGateTimeout
	}
	if wait := time.Until(l.nextAt); wait > 0 {
		select {
		case <-time.After(wait):
		case <-g.done:
			l.release()
			return nil, nil, g.err
		}
	}
	for {
		l.mu.Lock()
		d, ok := l.q.pop()
		l.mu.Unlock()
		if ok {
			l.nextAt = time.Now().Add(l.pace)
			return d.msg, d.from, nil
		}
		select {
		case <-l.wake:
		case <-g.done:
			l.release()
			return nil, nil, g.err
		case <-expired.C:
			l.release()
			return nil, nil, errGateTimeout
		}
	}
}

// gateReader hands the server datagrams from the gate; TCP reads stay the server's own.
type gateReader struct {
	dns.Reader
	lane *gateLane
}

// ReadPacketConn is how the server reads: its PacketConn is the gate's (gateConn).
func (r gateReader) ReadPacketConn(_ net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	return r.lane.next(timeout)
}

// ReadUDP is never called: the server's PacketConn is not a *net.UDPConn.
func (r gateReader) ReadUDP(*net.UDPConn, time.Duration) ([]byte, *dns.SessionUDP, error) {
	return nil, nil, errors.New("the UDP gate serves datagrams through ReadPacketConn")
}

// PacketConn is the servers' socket: the gate reads it, they only write their replies,
// from the address each request was sent to (udpSource).
func (g *udpGate) PacketConn() net.PacketConn { return gateConn{g.conns[0], g.raw[0], g} }

type gateConn struct {
	*net.UDPConn
	raw  *rawudp.Conn
	gate *udpGate
}

// errServersStopped is why the gate stopped reading when the servers shut down.
var errServersStopped = errors.New("the UDP servers shut down")

// SetReadDeadline: a server shuts down by setting a read deadline in the past on its
// socket (dns.Server.ShutdownContext), to end its read. The gate's reads are the poller's,
// which no deadline ends: so the gate stops reading itself.
func (c gateConn) SetReadDeadline(t time.Time) error {
	if !t.After(time.Now()) {
		c.gate.stopReading(errServersStopped)
	}
	return c.UDPConn.SetReadDeadline(t)
}

// Close: the servers close their socket once they stopped, or when they fail.
func (c gateConn) Close() error {
	c.gate.stopReading(errServersStopped)
	return c.UDPConn.Close()
}

func (c gateConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	to, ok := addr.(*udpSource)
	if !ok {
		return 0, fmt.Errorf("reply to %v: not a source the UDP gate read", addr)
	}
	if err := c.raw.WriteMsg(b, to.control, to.from); err != nil {
		return 0, err
	}
	return len(b), nil
}

// udpSource is where a datagram came from, as the servers see it (RemoteAddr), and the
// control message that sends its reply from the address it was sent to.
type udpSource struct {
	from    netip.AddrPort
	control []byte // rawudp.ReplyControl
}

func (s *udpSource) Network() string          { return "udp" }
func (s *udpSource) String() string           { return s.from.String() }
func (s *udpSource) AddrPort() netip.AddrPort { return s.from }

// errGateTimeout tells the server loop that nothing came within its read timeout, so it
// checks whether it is shutting down and reads again.
var errGateTimeout error = gateTimeout{}

type gateTimeout struct{}

func (gateTimeout) Error() string   { return "no datagram queued" }
func (gateTimeout) Timeout() bool   { return true }
func (gateTimeout) Temporary() bool { return true }

type datagram struct {
	msg    []byte
	from   *udpSource
	source netip.Addr // from's address, unmapped
}

// queue holds up to size datagrams, served one source at a time in turn, so a source
// that floods waits behind its own datagrams, not the others behind its. No source may
// hold more than a quarter of the queue.
type queue struct {
	size, n  int
	bySource map[netip.Addr][]datagram
	turn     []netip.Addr // the sources with datagrams queued, in the order they are served
	next     int          // index in turn of the source served next
	dropped  prometheus.Counter
}

// newQueue returns an empty queue whose drops count in dropped.
func newQueue(size int, dropped prometheus.Counter) queue {
	return queue{size: size, bySource: map[netip.Addr][]datagram{}, dropped: dropped}
}

// room tells whether a datagram from source may be queued.
func (q *queue) room(source netip.Addr) bool {
	return q.n < q.size && len(q.bySource[source]) < q.size/4
}

// push queues d; room(d.source) must have said yes.
func (q *queue) push(d datagram) {
	if len(q.bySource[d.source]) == 0 {
		q.turn = append(q.turn, d.source)
	}
	q.bySource[d.source] = append(q.bySource[d.source], d)
	q.n++
}

// pop takes the first datagram of the source whose turn it is.
func (q *queue) pop() (datagram, bool) {
	if q.n == 0 {
		return datagram{}, false
	}
	i := q.next % len(q.turn)
	source := q.turn[i]
	list := q.bySource[source]
	d := list[0]
	list[0] = datagram{}
	q.n--
	if len(list) == 1 {
		delete(q.bySource, source)
		q.turn = slices.Delete(q.turn, i, i+1)
		q.next = i // the next source moved into this index
	} else {
		q.bySource[source] = list[1:]
		q.next = i + 1
	}
	return d, true
}

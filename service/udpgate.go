package service

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// UDP request path bounds (README, Security). miekg/dns starts one goroutine per datagram
// it reads and nothing caps them: under a flood they pile up faster than they end (issue
// 14: 211k goroutines, 2.9 GB in 60 s). The gate reads the socket itself, queues what it
// read, and hands miekg a datagram only when fewer than udpSlots are being served.
const (
	udpSlots        = 128  // datagrams served at once (goroutines); slow kinds are capped lower (middleware.Busy)
	udpQueueAllowed = 1024 // queued datagrams from sources in allow_notify or allow_query
	udpQueueOthers  = 256  // queued datagrams from everyone else; served after the allowed ones
	udpMaxDatagram  = 65535

	// Slow kinds served at once, over UDP and TCP together (middleware.Busy): below
	// udpSlots, so a flood of them leaves slots to NOTIFYs.
	maxCommandsServing = 64
	maxQueriesServing  = 32
)

var udpDroppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "dnsagent", Name: "udp_dropped_total",
	Help: "Datagrams dropped unread because the request queue was full, by queue (allowed, others).",
}, []string{"queue"})

// udpGate sits between a UDP socket and miekg/dns's server loop (as its DecorateReader):
// one goroutine reads the socket into two bounded queues, one for allowed sources and one
// for the others, and the server loop takes datagrams off them, allowed ones first, only
// while a slot is free. A slot is given back when the request is answered or dropped
// (release). Within a queue no source may hold more than a quarter of it, so one flooding
// source leaves room for the others. A full queue drops the datagram: a flood costs a
// bounded queue, never goroutines.
type udpGate struct {
	conn    *net.UDPConn
	allowed func(netip.Addr) bool
	slots   chan struct{}
	start   sync.Once
	wake    chan struct{} // a datagram was queued
	done    chan struct{} // the reader stopped: err says why
	err     error

	mu     sync.Mutex
	queues [2]queue // allowed sources, others
}

func newUDPGate(conn *net.UDPConn, allowed func(netip.Addr) bool) *udpGate {
	g := &udpGate{conn: conn, allowed: allowed, slots: make(chan struct{}, udpSlots),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	g.queues[0] = newQueue(udpQueueAllowed, "allowed")
	g.queues[1] = newQueue(udpQueueOthers, "others")
	return g
}

// Decorate is the server's DecorateReader.
func (g *udpGate) Decorate(r dns.Reader) dns.Reader { return gateReader{Reader: r, g: g} }

// release gives back the slot of a datagram the server loop took.
func (g *udpGate) release() { <-g.slots }

// read fills the queues until the socket fails (it is closed at shutdown).
func (g *udpGate) read() {
	buf := make([]byte, udpMaxDatagram)
	for {
		n, session, err := dns.ReadFromSessionUDP(g.conn, buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && !ne.Timeout() && ne.Temporary() { //nolint:staticcheck // ECONNREFUSED and the like
				continue
			}
			g.err = err
			close(g.done)
			return
		}
		// Shorter than a header: the server would only drop it. QR set: a response, never
		// answered (reflection loops); middleware.AcceptRequests ignores them too.
		if n < 12 || buf[2]&0x80 != 0 {
			continue
		}
		source := session.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		lane := 1
		if g.allowed(source) {
			lane = 0
		}
		g.mu.Lock()
		queued := g.queues[lane].push(datagram{msg: append([]byte(nil), buf[:n]...), session: session, source: source})
		g.mu.Unlock()
		if !queued {
			g.queues[lane].dropped.Inc()
			continue
		}
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// next takes a slot, then the first datagram queued, allowed sources first.
func (g *udpGate) next(timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	g.start.Do(func() { go g.read() }) // after the server set its socket options
	expired := time.NewTimer(timeout)
	defer expired.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-g.done:
		return nil, nil, g.err
	case <-expired.C:
		return nil, nil, errGateTimeout
	}
	for {
		g.mu.Lock()
		d, ok := g.queues[0].pop()
		if !ok {
			d, ok = g.queues[1].pop()
		}
		g.mu.Unlock()
		if ok {
			return d.msg, d.session, nil
		}
		select {
		case <-g.wake:
		case <-g.done:
			g.release()
			return nil, nil, g.err
		case <-expired.C:
			g.release()
			return nil, nil, errGateTimeout
		}
	}
}

// gateReader hands the server datagrams from the gate; TCP reads stay the server's own.
type gateReader struct {
	dns.Reader
	g *udpGate
}

func (r gateReader) ReadUDP(_ *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	return r.g.next(timeout)
}

// errGateTimeout tells the server loop that nothing came within its read timeout, so it
// checks whether it is shutting down and reads again.
var errGateTimeout error = gateTimeout{}

type gateTimeout struct{}

func (gateTimeout) Error() string   { return "no datagram queued" }
func (gateTimeout) Timeout() bool   { return true }
func (gateTimeout) Temporary() bool { return true }

type datagram struct {
	msg     []byte
	session *dns.SessionUDP
	source  netip.Addr
}

// queue is a fixed-size FIFO of datagrams with a count per source.
type queue struct {
	ring      []datagram
	head, n   int
	perSource map[netip.Addr]int
	dropped   prometheus.Counter
}

func newQueue(size int, name string) queue {
	return queue{ring: make([]datagram, size), perSource: map[netip.Addr]int{},
		dropped: udpDroppedTotal.WithLabelValues(name)}
}

// push queues d unless the queue is full or d's source holds a quarter of it already.
func (q *queue) push(d datagram) bool {
	if q.n == len(q.ring) || q.perSource[d.source] >= len(q.ring)/4 {
		return false
	}
	q.ring[(q.head+q.n)%len(q.ring)] = d
	q.n++
	q.perSource[d.source]++
	return true
}

func (q *queue) pop() (datagram, bool) {
	if q.n == 0 {
		return datagram{}, false
	}
	d := q.ring[q.head]
	q.ring[q.head] = datagram{}
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	if q.perSource[d.source]--; q.perSource[d.source] == 0 {
		delete(q.perSource, d.source)
	}
	return d, true
}

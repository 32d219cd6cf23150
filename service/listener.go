package service

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// strangerTCPSlots is the share of tcp_backlog that sources in neither allow list may hold
// together: a tenth, at least one. They are only ever refused, and a refused connection is
// closed after its first reply, so a slowloris from many strangers cannot lock the allowed
// sources out (README, Security).
func strangerTCPSlots(backlog int) int { return max(1, backlog/10) }

// sourceListener closes a new TCP connection at once when its source already holds
// perSource open ones, or when it is a stranger (known says no) and strangers hold
// strangers connections already.
type sourceListener struct {
	net.Listener
	perSource int // 0: no per-source limit
	strangers int
	known     func(netip.Addr) bool
	log       *zap.Logger

	mu            sync.Mutex
	open          map[netip.Addr]int
	strangersOpen int
}

func limitSources(ln net.Listener, perSource, strangers int, known func(netip.Addr) bool, log *zap.Logger) net.Listener {
	return &sourceListener{Listener: ln, perSource: perSource, strangers: strangers, known: known, log: log,
		open: map[netip.Addr]int{}}
}

func (l *sourceListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		source := netip.MustParseAddrPort(conn.RemoteAddr().String()).Addr().Unmap()
		stranger := !l.known(source)
		l.mu.Lock()
		full := l.perSource > 0 && l.open[source] >= l.perSource
		if stranger && l.strangersOpen >= l.strangers {
			full = true
		}
		if !full {
			l.open[source]++
			if stranger {
				l.strangersOpen++
			}
		}
		l.mu.Unlock()
		if full {
			l.log.Debug("TCP connection closed at once: too many from this source, or from sources not allowed",
				zap.Stringer("source", source), zap.Bool("allowed", !stranger))
			conn.Close()
			continue
		}
		return &countedConn{Conn: conn, release: func() { l.release(source, stranger) }, writeTimeout: tcpWriteTimeout}, nil
	}
}

func (l *sourceListener) release(source netip.Addr, stranger bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[source]--; l.open[source] <= 0 {
		delete(l.open, source)
	}
	if stranger {
		l.strangersOpen--
	}
}

// tcpWriteTimeout bounds each write of a reply on TCP. miekg/dns sets no write deadline,
// and a client that stops reading (a zero window, probed for ever) would otherwise hold
// its connection slot, and the request's query or command slot, for good.
const tcpWriteTimeout = 10 * time.Second

// countedConn gives its slot back once, on the first Close, and bounds every write by
// writeTimeout.
type countedConn struct {
	net.Conn
	once         sync.Once
	release      func()
	writeTimeout time.Duration
}

// Write fails a reply the client does not take within writeTimeout, and closes the
// connection then: a client that keeps sending queries but never reads would otherwise
// hold its slot one timeout per query.
func (c *countedConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)) //nolint:errcheck // a closed conn fails the write
	n, err := c.Conn.Write(b)
	if err != nil {
		c.Close() //nolint:errcheck // the write's error is the one to report
	}
	return n, err
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

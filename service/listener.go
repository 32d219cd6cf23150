package service

import (
	"net"
	"net/netip"
	"sync"

	"go.uber.org/zap"
)

// perSourceListener closes a new TCP connection at once when its source already holds
// max open ones, so one client cannot take every slot of tcp_backlog.
type perSourceListener struct {
	net.Listener
	max int
	log *zap.Logger

	mu   sync.Mutex
	open map[netip.Addr]int
}

func limitPerSource(ln net.Listener, max int, log *zap.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return &perSourceListener{Listener: ln, max: max, log: log, open: map[netip.Addr]int{}}
}

func (l *perSourceListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		source := netip.MustParseAddrPort(conn.RemoteAddr().String()).Addr().Unmap()
		l.mu.Lock()
		full := l.open[source] >= l.max
		if !full {
			l.open[source]++
		}
		l.mu.Unlock()
		if full {
			l.log.Debug("TCP connection refused: too many from this source", zap.Stringer("source", source))
			conn.Close()
			continue
		}
		return &countedConn{Conn: conn, release: func() { l.release(source) }}, nil
	}
}

func (l *perSourceListener) release(source netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[source]--; l.open[source] <= 0 {
		delete(l.open, source)
	}
}

// countedConn gives its slot back once, on the first Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

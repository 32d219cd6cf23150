// Package connpool keeps idle TCP connections open for the next request to the same
// destination (RFC 7766 §6.2.1: DNS clients and servers should reuse connections).
package connpool

import (
	"net"
	"sync"
	"time"
)

// Pool holds idle connections by destination. A connection is put back only once the
// exchange on it is complete, and is closed when it was idle for IdleTimeout. The zero
// value is not usable: set both fields. A nil *Pool keeps nothing: Get returns nil, Put
// closes.
type Pool[K comparable] struct {
	MaxIdle     int           // idle connections kept per destination; more are closed
	IdleTimeout time.Duration // an idle connection is closed after this

	mu    sync.Mutex
	idle  map[K][]idleConn // most recently used last
	sweep *time.Timer      // runs closeIdle while connections are idle
}

type idleConn struct {
	conn  net.Conn
	since time.Time
}

// Get returns the most recently used idle connection to k, or nil. The peer may have
// closed it meanwhile: the caller finds out at its first write or read.
func (p *Pool[K]) Get(k K) net.Conn {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[k]
	if len(list) == 0 {
		return nil
	}
	c := list[len(list)-1]
	list[len(list)-1] = idleConn{}
	p.idle[k] = list[:len(list)-1]
	return c.conn
}

// Put keeps conn for the next request to k, or closes it if k has MaxIdle already.
func (p *Pool[K]) Put(k K, conn net.Conn) {
	if p == nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{}) //nolint:errcheck
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[k]) >= p.MaxIdle {
		conn.Close()
		return
	}
	if p.idle == nil {
		p.idle = map[K][]idleConn{}
	}
	p.idle[k] = append(p.idle[k], idleConn{conn: conn, since: time.Now()})
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.IdleTimeout, p.closeIdle)
	}
}

// Idle counts the idle connections to k.
func (p *Pool[K]) Idle(k K) int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[k])
}

// closeIdle closes the connections idle for IdleTimeout, and runs again when the oldest
// of the others will be.
func (p *Pool[K]) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-p.IdleTimeout)
	var oldest time.Time
	for k, list := range p.idle {
		n := 0
		for n < len(list) && !list[n].since.After(cutoff) {
			list[n].conn.Close()
			n++
		}
		if n == len(list) {
			delete(p.idle, k)
			continue
		}
		rest := append(list[:0], list[n:]...)
		clear(list[len(rest):])
		p.idle[k] = rest
		if oldest.IsZero() || rest[0].since.Before(oldest) {
			oldest = rest[0].since
		}
	}
	p.sweep = nil
	if !oldest.IsZero() {
		p.sweep = time.AfterFunc(oldest.Sub(cutoff), p.closeIdle)
	}
}

package harness

import (
	"io"
	"net"
	"sync"
	"time"
)

// tracker is what the harness's proxies share: the connections and goroutines they own, a
// bound on how many run at once (beyond it new work is refused rather than grown), and a
// shutdown that ends them all.
type tracker struct {
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func (r *tracker) init(max int) {
	r.sem = make(chan struct{}, max)
	r.conns = map[net.Conn]bool{}
}

// track registers a connection to be closed at shutdown; false (and c closed) once shut.
func (r *tracker) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = true
	return true
}

func (r *tracker) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *tracker) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// closeConns closes every connection tracked now; new ones are still taken.
func (r *tracker) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// shutdown closes every connection and the listeners, then waits for the goroutines.
func (r *tracker) shutdown(listeners ...io.Closer) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.closeConns()
	for _, l := range listeners {
		l.Close()
	}
	r.wg.Wait()
}

// run runs work in a goroutine of its own if the bound allows, and reports whether it did.
func (r *tracker) run(work func()) bool {
	select {
	case r.sem <- struct{}{}:
	default:
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sem }()
		work()
	}()
	return true
}

// accept serves ln's connections with serve until shutdown; the caller did r.wg.Add(1).
func (r *tracker) accept(ln net.Listener, serve func(net.Conn)) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if r.isClosed() {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !r.run(func() { serve(c) }) {
			c.Close() // too many connections: refuse rather than grow
		}
	}
}

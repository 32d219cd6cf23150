package harness

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ProxyMode says what a Proxy does to the upstream's replies. The zero value passes
// everything through.
type ProxyMode struct {
	// Delay holds the upstream's reply bytes for this long before forwarding them: on a
	// TCP connection once, before the first reply byte; on UDP before every datagram
	// (only when UDP is set).
	Delay time.Duration
	// CutAfter > 0 forwards at most that many reply bytes on each TCP connection, then
	// closes both sides. With UDP set, a datagram longer than CutAfter is dropped.
	CutAfter int
	// UDP applies Delay and CutAfter to the UDP relay as well; otherwise UDP passes
	// through untouched (so SOA checks still work while transfers are slowed or cut).
	UDP bool
}

// Proxy is a fault-injecting relay on a random loopback port (TCP and UDP) in front of a
// real server. The mode is read when a TCP connection is accepted or a UDP reply arrives,
// so it can be changed at run time.
type Proxy struct {
	tl       net.Listener
	ul       net.PacketConn
	upstream string

	mode atomic.Pointer[ProxyMode]

	tracker // connections and goroutines; bounds concurrent connections / UDP exchanges

	tcpConns  atomic.Int64
	udpMsgs   atomic.Int64
	cuts      atomic.Int64
	delayed   atomic.Int64
	replyByte atomic.Int64
}

// proxyMaxConcurrent bounds the proxy's goroutines: two per TCP connection, one per UDP
// exchange in flight.
const proxyMaxConcurrent = 64

// StartProxy starts a pass-through proxy to upstream (host:port) and closes it in
// t.Cleanup.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	tl, ul := listenBoth(t)
	p := &Proxy{tl: tl, ul: ul, upstream: upstream}
	p.init(proxyMaxConcurrent)
	p.mode.Store(&ProxyMode{})
	p.wg.Add(2)
	go p.accept(p.tl, func(c net.Conn) {
		p.tcpConns.Add(1)
		p.serveTCP(c, p.Mode())
	})
	go p.udpLoop()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address (TCP and UDP).
func (p *Proxy) Addr() string { return p.tl.Addr().String() }

// SetMode switches the mode for new connections and datagrams.
func (p *Proxy) SetMode(m ProxyMode) { p.mode.Store(&m) }

// Mode returns the current mode.
func (p *Proxy) Mode() ProxyMode { return *p.mode.Load() }

// Pass switches to pass-through.
func (p *Proxy) Pass() { p.SetMode(ProxyMode{}) }

// SetDelay holds TCP replies for d (per connection).
func (p *Proxy) SetDelay(d time.Duration) { p.SetMode(ProxyMode{Delay: d}) }

// SetCut forwards at most k reply bytes per TCP connection, then closes it.
func (p *Proxy) SetCut(k int) { p.SetMode(ProxyMode{CutAfter: k}) }

// Reset closes every connection open through the proxy, as a primary that restarts: a
// client's pooled connection, opened under an earlier mode, is gone, and the next one gets
// the mode set now.
func (p *Proxy) Reset() { p.closeConns() }

// TCPConns counts accepted TCP connections.
func (p *Proxy) TCPConns() int64 { return p.tcpConns.Load() }

// UDPMessages counts client datagrams relayed upstream.
func (p *Proxy) UDPMessages() int64 { return p.udpMsgs.Load() }

// Cuts counts TCP connections (and UDP replies) the proxy cut.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// Delayed counts replies the proxy held.
func (p *Proxy) Delayed() int64 { return p.delayed.Load() }

// Close stops the proxy, closes every connection and waits for its goroutines.
func (p *Proxy) Close() { p.shutdown(p.tl, p.ul) }

func (p *Proxy) serveTCP(client net.Conn, mode ProxyMode) {
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	up, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)

	// Idle connections end on their own: nothing here waits forever.
	const idle = 30 * time.Second
	var inner sync.WaitGroup
	inner.Add(1)
	go func() { // client -> upstream, untouched
		defer inner.Done()
		buf := make([]byte, 16<<10)
		for {
			client.SetReadDeadline(time.Now().Add(idle))
			n, err := client.Read(buf)
			if n > 0 {
				up.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := up.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()

	// upstream -> client, with the faults
	buf := make([]byte, 16<<10)
	sent := 0
	first := true
	for {
		up.SetReadDeadline(time.Now().Add(idle))
		n, err := up.Read(buf)
		if n > 0 {
			if first && mode.Delay > 0 {
				p.delayed.Add(1)
				if !p.sleep(mode.Delay) {
					break
				}
			}
			first = false
			chunk := buf[:n]
			cut := false
			if mode.CutAfter > 0 && sent+len(chunk) >= mode.CutAfter {
				chunk = chunk[:mode.CutAfter-sent]
				cut = true
			}
			client.SetWriteDeadline(time.Now().Add(idle))
			w, werr := client.Write(chunk)
			sent += w
			p.replyByte.Add(int64(w))
			if cut {
				p.cuts.Add(1)
				break
			}
			if werr != nil {
				break
			}
		}
		if err != nil {
			if err == io.EOF {
				if tc, ok := client.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				// wait for the client side to finish (bounded by its idle deadline)
			}
			break
		}
	}
	// Closing both ends also unblocks the client->upstream goroutine.
	client.Close()
	up.Close()
	inner.Wait()
}

// sleep waits d unless the proxy closes first.
func (p *Proxy) sleep(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p.isClosed() {
			return false
		}
		step := min(time.Until(deadline), 50*time.Millisecond)
		time.Sleep(step)
	}
	return !p.isClosed()
}

func (p *Proxy) udpLoop() {
	defer p.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := p.ul.ReadFrom(buf)
		if err != nil {
			if p.isClosed() {
				return
			}
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		mode := p.Mode()
		// Counted before the relay starts: it may answer before this loop runs again, and a
		// test reading the count after its answer must see the datagram.
		p.udpMsgs.Add(1)
		if !p.run(func() { p.relayUDP(msg, from, mode) }) { // overloaded: dropped, as a UDP server may
			p.udpMsgs.Add(-1)
		}
	}
}

func (p *Proxy) relayUDP(msg []byte, from net.Addr, mode ProxyMode) {
	up, err := net.Dial("udp", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	up.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := up.Write(msg); err != nil {
		return
	}
	buf := make([]byte, 65535)
	n, err := up.Read(buf)
	if err != nil {
		return
	}
	if mode.UDP {
		if mode.Delay > 0 {
			p.delayed.Add(1)
			if !p.sleep(mode.Delay) {
				return
			}
		}
		if mode.CutAfter > 0 && n > mode.CutAfter {
			p.cuts.Add(1)
			return
		}
	}
	p.ul.WriteTo(buf[:n], from)
}

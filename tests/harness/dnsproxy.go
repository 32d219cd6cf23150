package harness

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSFault is what a DNSProxy does with a connection whose first query is of one kind.
// The zero value relays the connection untouched.
type DNSFault struct {
	// Rcode, when not NOERROR, answers the query itself with this rcode (id, opcode and
	// question echoed, unsigned) and closes the connection; the upstream never sees it.
	Rcode int
	// CutAfter > 0 relays the query but closes both sides after that many reply bytes
	// (length prefixes included), as a primary that dies mid-stream.
	CutAfter int
	// Delay holds the upstream's reply once, before its first byte is relayed: the
	// upstream has already chosen what it sends (for a transfer, the version).
	Delay time.Duration
	// Close closes the connection as soon as the query is read: a primary that is down.
	Close bool
	// Hang reads the query and never answers: a primary that accepts connections and
	// then stalls. The connection stays open until the client gives up.
	Hang bool
	// Rewrite, when set, relays the reply stream message by message, each replaced by
	// what Rewrite returns for it (i counts from 0; msg is without its length prefix).
	// nil sends nothing more and holds the connection open, as a primary that answered
	// and waits for the next query.
	Rewrite func(i int, msg []byte) []byte
}

// DNSProxyMode says what a DNSProxy does, by the type of a connection's first query.
// The zero value passes everything through.
type DNSProxyMode struct {
	IXFR  DNSFault
	AXFR  DNSFault
	Other DNSFault // SOA and every other query
}

// DNSProxy is a DNS-aware fault-injecting TCP relay on a random loopback port in front of
// a real server (UDP is not relayed). It takes one query a connection: a second one
// closes the connection unanswered. It reads the first message of each connection and
// decides from its query type, under the mode current at that moment, whether to relay
// the connection, answer with an error rcode, cut the reply stream, hold it, drop the
// connection or hang. It counts the queries it saw by type.
type DNSProxy struct {
	ln       net.Listener
	upstream string
	mode     atomic.Pointer[DNSProxyMode]

	tracker // connections and goroutines; bounds the connections served at once

	ixfrs, axfrs, others atomic.Int64
	answered, cuts, held atomic.Int64
	dropped, hung        atomic.Int64
	reused               atomic.Int64 // second queries on a connection, closed unanswered
}

// dnsProxyMaxConns bounds a DNSProxy's connections (two goroutines each); more are
// refused rather than grown.
const dnsProxyMaxConns = 64

// dnsProxyIdle ends connections where nothing moves, so no goroutine waits forever.
const dnsProxyIdle = 30 * time.Second

// StartDNSProxy starts a pass-through DNSProxy to upstream (host:port) on 127.0.0.1 and
// closes it in t.Cleanup.
func StartDNSProxy(t testing.TB, upstream string) *DNSProxy {
	t.Helper()
	return StartDNSProxyOn(t, "127.0.0.1", upstream)
}

// StartDNSProxyOn is StartDNSProxy listening on ip (another loopback address, such as
// 127.0.0.2, gives a master an address of its own).
func StartDNSProxyOn(t testing.TB, ip, upstream string) *DNSProxy {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("DNS proxy: %v", err)
	}
	p := &DNSProxy{ln: ln, upstream: upstream}
	p.init(dnsProxyMaxConns)
	p.mode.Store(&DNSProxyMode{})
	p.wg.Add(1)
	go p.accept(p.ln, func(c net.Conn) {
		if p.track(c) {
			defer p.untrack(c)
			p.serve(c)
		}
	})
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's TCP address, 127.0.0.1:port.
func (p *DNSProxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches the mode for connections whose first query arrives from now on.
func (p *DNSProxy) SetMode(m DNSProxyMode) { p.mode.Store(&m) }

// Mode returns the current mode.
func (p *DNSProxy) Mode() DNSProxyMode { return *p.mode.Load() }

// Pass relays everything.
func (p *DNSProxy) Pass() { p.SetMode(DNSProxyMode{}) }

// SetIXFR applies f to IXFR queries and relays every other query.
func (p *DNSProxy) SetIXFR(f DNSFault) { p.SetMode(DNSProxyMode{IXFR: f}) }

// Down closes every connection as soon as its query is read: the primary looks down.
func (p *DNSProxy) Down() {
	f := DNSFault{Close: true}
	p.SetMode(DNSProxyMode{IXFR: f, AXFR: f, Other: f})
}

// Hang accepts every connection and never answers.
func (p *DNSProxy) Hang() {
	f := DNSFault{Hang: true}
	p.SetMode(DNSProxyMode{IXFR: f, AXFR: f, Other: f})
}

// IXFRs counts IXFR queries seen, whatever was done with them.
func (p *DNSProxy) IXFRs() int64 { return p.ixfrs.Load() }

// AXFRs counts AXFR queries seen.
func (p *DNSProxy) AXFRs() int64 { return p.axfrs.Load() }

// Transfers counts IXFR and AXFR queries seen.
func (p *DNSProxy) Transfers() int64 { return p.IXFRs() + p.AXFRs() }

// Others counts the other queries seen (SOA ...).
func (p *DNSProxy) Others() int64 { return p.others.Load() }

// Answered counts queries the proxy answered itself with an error rcode.
func (p *DNSProxy) Answered() int64 { return p.answered.Load() }

// Cuts counts reply streams cut after CutAfter bytes.
func (p *DNSProxy) Cuts() int64 { return p.cuts.Load() }

// Held counts replies held for Delay; it is incremented when the hold starts.
func (p *DNSProxy) Held() int64 { return p.held.Load() }

// Dropped counts connections closed by Close.
func (p *DNSProxy) Dropped() int64 { return p.dropped.Load() }

// Reused counts connections closed because a second query came on them.
func (p *DNSProxy) Reused() int64 { return p.reused.Load() }

// Hung counts connections left unanswered by Hang.
func (p *DNSProxy) Hung() int64 { return p.hung.Load() }

// Close stops the proxy, closes every connection and waits for its goroutines.
func (p *DNSProxy) Close() { p.shutdown(p.ln) }

// readQuery reads one length-prefixed message; it returns the raw bytes (prefix
// included) and the message, nil if it does not parse.
func readQuery(c net.Conn) ([]byte, *dns.Msg, error) {
	raw, msg, err := readMessage(c)
	if err != nil {
		return nil, nil, err
	}
	m := new(dns.Msg)
	if m.Unpack(msg) != nil || len(m.Question) != 1 {
		return raw, nil, nil
	}
	return raw, m, nil
}

// classify counts the query and returns the fault that applies to it.
func (p *DNSProxy) classify(q *dns.Msg) DNSFault {
	mode := p.Mode()
	switch {
	case q != nil && q.Question[0].Qtype == dns.TypeIXFR:
		p.ixfrs.Add(1)
		return mode.IXFR
	case q != nil && q.Question[0].Qtype == dns.TypeAXFR:
		p.axfrs.Add(1)
		return mode.AXFR
	}
	p.others.Add(1)
	return mode.Other
}

func (p *DNSProxy) serve(client net.Conn) {
	raw, q, err := readQuery(client)
	if err != nil {
		return
	}
	fault := p.classify(q)
	switch {
	case fault.Close:
		p.dropped.Add(1)
	case fault.Hang:
		p.hung.Add(1)
		client.SetReadDeadline(time.Now().Add(dnsProxyIdle))
		io.Copy(io.Discard, client) // until the client (or Close) ends it
	case fault.Rcode != dns.RcodeSuccess && q != nil:
		p.answered.Add(1)
		if reply, err := new(dns.Msg).SetRcode(q, fault.Rcode).Pack(); err == nil {
			client.SetWriteDeadline(time.Now().Add(dnsProxyIdle))
			client.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(reply))), reply...))
		}
	default:
		p.relay(client, raw, fault)
	}
}

// relay sends the query upstream and relays the connection both ways, applying the
// fault's delay and cut to the reply stream.
func (p *DNSProxy) relay(client net.Conn, query []byte, fault DNSFault) {
	up, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil || !p.track(up) {
		return
	}
	defer p.untrack(up)
	up.SetWriteDeadline(time.Now().Add(dnsProxyIdle))
	if _, err := up.Write(query); err != nil {
		return
	}
	done := make(chan struct{})
	go func() { // client -> upstream: the proxy takes one query a connection
		defer close(done)
		client.SetReadDeadline(time.Now().Add(dnsProxyIdle))
		n, err := client.Read(make([]byte, 512))
		if n > 0 {
			// Another query on the connection (the agent reuses connections): the
			// proxy closes it, as a primary serving one query a connection does, so
			// the agent asks again on a new connection, which gets the mode's fault.
			p.reused.Add(1)
			client.Close()
			up.Close()
			return
		}
		if err != nil {
			if tc, ok := up.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
	}()
	p.relayReplies(client, up, fault)
	client.Close() // unblocks the other direction
	up.Close()
	<-done
}

func (p *DNSProxy) relayReplies(client, up net.Conn, fault DNSFault) {
	if fault.Rewrite != nil {
		p.rewriteReplies(client, up, fault.Rewrite)
		return
	}
	buf := make([]byte, 16<<10)
	sent := 0
	for first := true; ; first = false {
		up.SetReadDeadline(time.Now().Add(dnsProxyIdle))
		n, err := up.Read(buf)
		if n > 0 && first && fault.Delay > 0 {
			p.held.Add(1)
			if !p.sleep(fault.Delay) {
				return
			}
		}
		chunk := buf[:n]
		cut := fault.CutAfter > 0 && sent+n >= fault.CutAfter
		if cut {
			chunk = chunk[:fault.CutAfter-sent]
		}
		if len(chunk) > 0 {
			client.SetWriteDeadline(time.Now().Add(dnsProxyIdle))
			w, werr := client.Write(chunk)
			sent += w
			if werr != nil {
				return
			}
		}
		if cut {
			p.cuts.Add(1)
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := client.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			return
		}
	}
}

// rewriteReplies relays the upstream's messages one at a time through rewrite.
func (p *DNSProxy) rewriteReplies(client, up net.Conn, rewrite func(int, []byte) []byte) {
	for i := 0; ; i++ {
		_, msg, err := readMessage(up)
		if err != nil {
			if tc, ok := client.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				tc.CloseWrite()
			}
			return
		}
		out := rewrite(i, msg)
		if out == nil {
			p.sleep(dnsProxyIdle) // until the proxy closes; the client gives up first
			return
		}
		client.SetWriteDeadline(time.Now().Add(dnsProxyIdle))
		if _, err := client.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
			return
		}
	}
}

// readMessage reads one length-prefixed message; it returns the raw bytes (prefix
// included) and the message without its prefix.
func readMessage(c net.Conn) (raw, msg []byte, err error) {
	c.SetReadDeadline(time.Now().Add(dnsProxyIdle))
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, nil, err
	}
	raw = make([]byte, 2+int(binary.BigEndian.Uint16(l[:])))
	copy(raw, l[:])
	if _, err := io.ReadFull(c, raw[2:]); err != nil {
		return nil, nil, err
	}
	return raw, raw[2:], nil
}

// sleep waits d unless the proxy closes first.
func (p *DNSProxy) sleep(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p.isClosed() {
			return false
		}
		time.Sleep(min(time.Until(deadline), 20*time.Millisecond))
	}
	return !p.isClosed()
}

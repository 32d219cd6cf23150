package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/internal/rawudp"
)

// The upstreams here are fakes on loopback that misbehave on purpose: answers out of
// order, late, spoofed, for another question. The relay against real named is covered
// by the end-to-end tests (tests/query_test.go).

// The helpers below report with t.Error, never t.Fatal: the fake upstreams and the
// concurrent clients call them from goroutines of their own, where t.Fatal would end only
// that goroutine.

func query(t testing.TB, id uint16, name string) []byte {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, dns.TypeTXT)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Error(err)
	}
	return b
}

// reply answers q (as the upstream received it) with a TXT record holding marker.
func reply(t testing.TB, q []byte, marker string) []byte {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(q); err != nil {
		t.Error(err)
		return nil
	}
	r := new(dns.Msg).SetReply(m)
	r.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{marker}}}
	b, err := r.Pack()
	if err != nil {
		t.Error(err)
	}
	return b
}

// marker returns the id and the TXT text of an answer.
func marker(t testing.TB, b []byte) (uint16, string) {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Errorf("answer does not unpack: %v", err)
		return 0, ""
	}
	if len(m.Answer) != 1 {
		return m.Id, ""
	}
	return m.Id, m.Answer[0].(*dns.TXT).Txt[0]
}

type packet struct {
	msg  []byte
	from *net.UDPAddr
}

// fakeUDP is an upstream that hands every datagram to the test.
func fakeUDP(t *testing.T) (*net.UDPConn, <-chan packet) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan packet, 1024)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- packet{append([]byte(nil), buf[:n]...), from}
		}
	}()
	return conn, ch
}

func recv(t *testing.T, ch <-chan packet) packet {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(3 * time.Second):
		t.Error("the upstream got no query")
		return packet{}
	}
}

// answerInReverse waits for n queries at the fake upstream, then answers them all back to
// back, the last first.
func answerInReverse(t *testing.T, up *net.UDPConn, ch <-chan packet, n int) {
	var got []packet
	for len(got) < n {
		p, ok := <-ch
		if !ok {
			return
		}
		got = append(got, p)
	}
	for i := len(got) - 1; i >= 0; i-- {
		m := new(dns.Msg)
		m.Unpack(got[i].msg)
		up.WriteToUDP(reply(t, got[i].msg, m.Question[0].Name), got[i].from)
	}
}

// Many queries in flight at once on the shared sockets, answered in reverse order: each
// client gets the answer to its own question, with its own id.
func TestUDPConcurrentAnswersOutOfOrder(t *testing.T) {
	up, ch := fakeUDP(t)
	c := New(up.LocalAddr().String(), 5*time.Second, nil)
	const n = 200
	go answerInReverse(t, up, ch, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("q%d.example.", i)
			a, err := c.Exchange(context.Background(), query(t, uint16(1000+i), name), false)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			defer a.Release()
			if id, txt := marker(t, a.Bytes); id != uint16(1000+i) || txt != name {
				t.Errorf("query %s (id %d) got the answer for %s with id %d", name, 1000+i, txt, id)
			}
		}()
	}
	wg.Wait()
}

// Before the real answer the client's socket receives datagrams that are not it: another
// id, another question, a query instead of an answer, and the right id and question from
// another address (a spoofer who saw the query). Only the real one is taken.
func TestUDPMismatchedAnswersDropped(t *testing.T) {
	up, ch := fakeUDP(t)
	spoofer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	c := New(up.LocalAddr().String(), 3*time.Second, nil)
	go func() {
		p, ok := <-ch
		if !ok {
			return
		}
		spoofer.WriteToUDP(reply(t, p.msg, "spoofed"), p.from)
		otherID := reply(t, p.msg, "other id")
		binary.BigEndian.PutUint16(otherID, binary.BigEndian.Uint16(p.msg)+1)
		up.WriteToUDP(otherID, p.from)
		otherQ := reply(t, query(t, binary.BigEndian.Uint16(p.msg), "other.example."), "other question")
		up.WriteToUDP(otherQ, p.from)
		notAnswer := reply(t, p.msg, "no QR")
		notAnswer[2] &^= 0x80
		up.WriteToUDP(notAnswer, p.from)
		up.WriteToUDP([]byte{p.msg[0], p.msg[1], 0x80}, p.from) // runt
		time.Sleep(50 * time.Millisecond)                       // the spoofed datagram had every chance to arrive first
		up.WriteToUDP(reply(t, p.msg, "real"), p.from)
	}()
	a, err := c.Exchange(context.Background(), query(t, 0x4242, "q.example."), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	if id, txt := marker(t, a.Bytes); id != 0x4242 || txt != "real" {
		t.Errorf("got %q with id %#x, want the real answer with id 0x4242", txt, id)
	}
}

// A query times out; the next one on the same socket for the same question draws the
// same upstream id. The id is quarantined, so the late answer to the first query is
// dropped and the second client gets the answer to its own query.
func TestUDPLateAnswerNeverReachesTheNextQuery(t *testing.T) {
	ids := []uint16{7, 7, 8}
	defer func(orig func() uint16) { newID = orig }(newID)
	var draws atomic.Int32
	newID = func() uint16 { return ids[min(int(draws.Add(1))-1, len(ids)-1)] }

	up, ch := fakeUDP(t)
	c := New(up.LocalAddr().String(), 200*time.Millisecond, nil)
	s := &c.udp[0] // both queries on one socket: one id space
	exchange := func(id uint16) (*Answer, error) {
		q := query(t, id, "q.example.")
		qs, _ := parseQuery(q)
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		return s.exchange(ctx, q, qs)
	}
	start := time.Now()
	if _, err := exchange(1); err == nil {
		t.Fatal("the first query was answered; the upstream never answers it")
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second {
		t.Errorf("the unanswered query failed after %v, want the 200ms timeout", el)
	}
	first := recv(t, ch)
	go func() {
		second := recv(t, ch)
		up.WriteToUDP(reply(t, first.msg, "late answer to the first query"), first.from)
		time.Sleep(50 * time.Millisecond)
		up.WriteToUDP(reply(t, second.msg, "second"), second.from)
	}()
	a, err := exchange(2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	if _, txt := marker(t, a.Bytes); txt != "second" {
		t.Errorf("the second query got %q, want its own answer", txt)
	}
}

// A truncated answer comes back as it is, TC bit and all; only the id is the client's.
func TestUDPTruncatedAnswerRelayed(t *testing.T) {
	up, ch := fakeUDP(t)
	c := New(up.LocalAddr().String(), 3*time.Second, nil)
	sentc := make(chan []byte, 1)
	go func() {
		p := recv(t, ch)
		sent := reply(t, p.msg, "part")
		sent[2] |= 0x02 // TC
		sentc <- sent
		up.WriteToUDP(sent, p.from)
	}()
	a, err := c.Exchange(context.Background(), query(t, 0x0102, "big.example."), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	want := append([]byte{0x01, 0x02}, (<-sentc)[2:]...)
	if string(a.Bytes) != string(want) {
		t.Errorf("relayed % x\nwant     % x", a.Bytes, want)
	}
}

// With nothing listening at the destination the kernel's port-unreachable fails the query
// at once, not after the timeout.
func TestUDPRefusedFailsFast(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	conn.Close()
	c := New(addr, 5*time.Second, nil)
	start := time.Now()
	_, err = c.Exchange(context.Background(), query(t, 1, "q.example."), false)
	if err == nil {
		t.Fatal("a query to a closed port was answered")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("a query to a closed port failed after %v (%v), want at once", el, err)
	}
}

// fakeTCP answers every query on its connections through answer (nil: close), counting
// connections; closeAll closes the open ones as a server's idle timeout would.
type fakeTCP struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func startTCP(t *testing.T, answer func(q []byte) []byte) *fakeTCP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTCP{ln: ln}
	t.Cleanup(func() { ln.Close(); f.closeAll() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			f.mu.Lock()
			f.conns = append(f.conns, conn)
			f.mu.Unlock()
			go func() {
				defer conn.Close()
				for {
					var l [2]byte
					if _, err := io.ReadFull(conn, l[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(conn, q); err != nil {
						return
					}
					a := answer(q)
					if a == nil {
						return
					}
					conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
				}
			}()
		}
	}()
	return f
}

func (f *fakeTCP) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func tcpExchange(t *testing.T, c *Client, id uint16, name string) (string, error) {
	t.Helper()
	a, err := c.Exchange(context.Background(), query(t, id, name), true)
	if err != nil {
		return "", err
	}
	defer a.Release()
	gotID, txt := marker(t, a.Bytes)
	if gotID != id {
		t.Errorf("TCP answer with id %d, want %d", gotID, id)
	}
	return txt, nil
}

// Sequential TCP queries share one connection; when the server closes it (named's idle
// timeout), the next query opens another and is answered.
func TestTCPConnectionsReused(t *testing.T) {
	f := startTCP(t, func(q []byte) []byte { return reply(t, q, "ok") })
	c := New(f.ln.Addr().String(), 3*time.Second, nil)
	for i := 0; i < 20; i++ {
		if txt, err := tcpExchange(t, c, uint16(i), "q.example."); err != nil || txt != "ok" {
			t.Fatalf("query %d: %q, %v", i, txt, err)
		}
	}
	if n := f.accepted.Load(); n != 1 {
		t.Errorf("20 sequential queries opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if _, err := tcpExchange(t, c, uint16(i*100+j), fmt.Sprintf("q%d.example.", i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := f.accepted.Load(); n > 1+8 {
		t.Errorf("8 concurrent clients opened %d connections, want at most 9", n)
	}
	f.closeAll()
	before := f.accepted.Load()
	if txt, err := tcpExchange(t, c, 0x99, "q.example."); err != nil || txt != "ok" {
		t.Fatalf("query after the server closed the idle connections: %q, %v", txt, err)
	}
	if f.accepted.Load() != before+1 {
		t.Errorf("after the server closed the pooled connections: %d new ones, want 1", f.accepted.Load()-before)
	}
}

// An answer to another question fails the query, and its connection is not used again.
func TestTCPMismatchedAnswerFailsAndDropsTheConnection(t *testing.T) {
	var n atomic.Int32
	f := startTCP(t, func(q []byte) []byte {
		if n.Add(1) == 1 {
			return reply(t, query(t, binary.BigEndian.Uint16(q), "other.example."), "wrong")
		}
		return reply(t, q, "ok")
	})
	c := New(f.ln.Addr().String(), 3*time.Second, nil)
	if txt, err := tcpExchange(t, c, 1, "q.example."); err == nil {
		t.Fatalf("an answer to another question was relayed: %q", txt)
	}
	if txt, err := tcpExchange(t, c, 2, "q.example."); err != nil || txt != "ok" {
		t.Fatalf("the next query: %q, %v", txt, err)
	}
	if got := f.accepted.Load(); got != 2 {
		t.Errorf("%d connections, want 2: the one that carried a wrong answer is not reused", got)
	}
}

// A TCP upstream that never answers fails the query at the timeout.
func TestTCPTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	f := startTCP(t, func(q []byte) []byte { <-block; return nil })
	c := New(f.ln.Addr().String(), 200*time.Millisecond, nil)
	start := time.Now()
	_, err := tcpExchange(t, c, 1, "q.example.")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Errorf("want a timeout, got %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("failed after %v, want the 200ms timeout", el)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestAnswers(t *testing.T) {
	q := query(t, 5, "Q.Example.")
	qs, err := parseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	m := func(id uint16, name string, qtype uint16, qr bool) []byte {
		r := new(dns.Msg).SetQuestion(name, qtype)
		r.Id, r.Response = id, qr
		b, _ := r.Pack()
		return b
	}
	for _, c := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"same", m(5, "Q.Example.", dns.TypeTXT, true), true},
		{"other case (0x20)", m(5, "q.eXAMPLE.", dns.TypeTXT, true), true},
		{"other id", m(6, "Q.Example.", dns.TypeTXT, true), false},
		{"no QR", m(5, "Q.Example.", dns.TypeTXT, false), false},
		{"other type", m(5, "Q.Example.", dns.TypeA, true), false},
		{"other name", m(5, "R.Example.", dns.TypeTXT, true), false},
		{"longer name", m(5, "Q.Example.com.", dns.TypeTXT, true), false},
		{"no question", append(m(5, "Q.Example.", dns.TypeTXT, true)[:4], 0, 0, 0, 0, 0, 0, 0, 0), false},
		{"header only", m(5, "Q.Example.", dns.TypeTXT, true)[:12], false},
		{"FORMERR without question", formerr(m(5, "Q.Example.", dns.TypeTXT, true)[:12]), true},
		{"FORMERR, other id", formerr(m(6, "Q.Example.", dns.TypeTXT, true)[:12]), false},
		{"FORMERR, no QR", formerr(m(5, "Q.Example.", dns.TypeTXT, false)[:12]), false},
		{"FORMERR, other question", formerr(m(5, "R.Example.", dns.TypeTXT, true)), false},
	} {
		if got := answers(c.msg, 5, qs); got != c.want {
			t.Errorf("%s: answers = %v, want %v", c.name, got, c.want)
		}
	}
}

// formerr sets msg's rcode to FORMERR, and its question count to 0 when it has no question.
func formerr(msg []byte) []byte {
	msg[3] = msg[3]&0xf0 | dns.RcodeFormatError
	if len(msg) == 12 {
		msg[4], msg[5] = 0, 0
	}
	return msg
}

// replies collects what Send's reader hands a Replier.
type replies chan result

func (r replies) Reply(answer []byte, err error, _ *rawudp.Outbox) {
	if err != nil {
		r <- result{err: err}
		return
	}
	b := append([]byte(nil), answer...)
	r <- result{a: &Answer{Bytes: b}}
}

func (r replies) wait(t *testing.T, within time.Duration) result {
	t.Helper()
	select {
	case res := <-r:
		return res
	case <-time.After(within):
		t.Fatal("Send's Replier was not called")
		return result{}
	}
}

// Send without waiting: the answer reaches the Replier with the query's id; a query the
// upstream never answers fails at the timeout (the reader's sweep), and its late answer
// reaches nobody; the destination refusing fails a query at once.
func TestSendAnswerTimeoutRefused(t *testing.T) {
	up, ch := fakeUDP(t)
	c := New(up.LocalAddr().String(), 300*time.Millisecond, nil)
	r := make(replies, 4)
	if err := c.Send(query(t, 0x1234, "q.example."), r); err != nil {
		t.Fatal(err)
	}
	p := recv(t, ch)
	up.WriteToUDP(reply(t, p.msg, "first"), p.from)
	res := r.wait(t, 3*time.Second)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if id, txt := marker(t, res.a.Bytes); id != 0x1234 || txt != "first" {
		t.Errorf("got %q with id %#x, want the answer with id 0x1234", txt, id)
	}

	start := time.Now()
	if err := c.Send(query(t, 0x4321, "late.example."), r); err != nil {
		t.Fatal(err)
	}
	late := recv(t, ch)
	res = r.wait(t, 3*time.Second)
	if res.err == nil || !errors.Is(res.err, context.DeadlineExceeded) {
		t.Fatalf("an unanswered query: %v, want a timeout", res.err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
		t.Errorf("the unanswered query failed after %v, want the 300ms timeout", el)
	}
	up.WriteToUDP(reply(t, late.msg, "late"), late.from)
	select {
	case res := <-r:
		t.Fatalf("a late answer reached the Replier again: %+v", res)
	case <-time.After(200 * time.Millisecond):
	}

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	closed := conn.LocalAddr().String()
	conn.Close()
	c = New(closed, 5*time.Second, nil)
	start = time.Now()
	if err := c.Send(query(t, 1, "q.example."), r); err == nil {
		if res := r.wait(t, 3*time.Second); res.err == nil {
			t.Fatal("a query to a closed port was answered")
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("a query to a closed port failed after %v, want at once", el)
	}
}

// outboxReplier writes its answer to a client through the reader's Outbox, as the agent's
// fast path does, keeping the answer's bytes (not a copy) until they are sent.
type outboxReplier struct {
	sock   *rawudp.Conn
	to     netip.AddrPort
	answer []byte
	told   chan<- error
}

func (r *outboxReplier) Reply(answer []byte, err error, out *rawudp.Outbox) {
	if err != nil {
		r.told <- err
		return
	}
	r.answer = answer
	out.Add(r.sock, answer, nil, r.to, r)
}

func (r *outboxReplier) Sent(err error) { r.told <- err }

// Answers that arrive together are read in one batch and go to their clients together
// (the Outbox): each keeps its own bytes and its client's id until the flush sends them,
// so every client receives the answer to its own question.
func TestSendBatchedAnswersReachTheirClients(t *testing.T) {
	up, ch := fakeUDP(t)
	c := New(up.LocalAddr().String(), 5*time.Second, nil)
	const n = 200
	go answerInReverse(t, up, ch, n) // back to back: the reader finds many waiting
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetReadBuffer(1 << 20)
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	sock, err := rawudp.New(server)
	if err != nil {
		t.Fatal(err)
	}
	told := make(chan error, n)
	to := client.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range n {
		r := &outboxReplier{sock: sock, to: to, told: told}
		if err := c.Send(query(t, uint16(1000+i), fmt.Sprintf("q%d.example.", i)), r); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case err := <-told:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("not every answer was sent")
		}
	}
	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	seen := map[uint16]bool{}
	for range n {
		k, err := client.Read(buf)
		if err != nil {
			t.Fatalf("%d answers received: %v", len(seen), err)
		}
		id, txt := marker(t, buf[:k])
		if want := fmt.Sprintf("q%d.example.", int(id)-1000); txt != want || seen[id] {
			t.Fatalf("the client got id %d with the answer for %s (want %s; seen before: %v)", id, txt, want, seen[id])
		}
		seen[id] = true
	}
}

// A socket idle for idleTimeout is closed and leaves the Poller; the next query opens a
// new one, which the Poller reads (rawudp's own test covers the Poller emptied, then
// filled again) and the sweeps watch again: a query sent on it that is never answered
// fails at its timeout.
func TestUDPIdleSocketsCloseAndReopen(t *testing.T) {
	up, ch := fakeUDP(t)
	go func() {
		for p := range ch {
			m := new(dns.Msg)
			m.Unpack(p.msg)
			if name := m.Question[0].Name; name != "unanswered.example." {
				up.WriteToUDP(reply(t, p.msg, name), p.from)
			}
		}
	}()
	c := New(up.LocalAddr().String(), 300*time.Millisecond, nil)
	ask := func(name string) {
		t.Helper()
		for range udpSockets { // round robin: every socket carries one
			q := new(dns.Msg).SetQuestion(name, dns.TypeTXT)
			packed, _ := q.Pack()
			a, err := c.Exchange(context.Background(), packed, false)
			if err != nil {
				t.Fatalf("query %s: %v", name, err)
			}
			a.Release()
		}
	}
	ask("before.example.")
	later := time.Now().Add(idleTimeout + time.Second)
	for i := range c.udp {
		s := &c.udp[i]
		s.mu.Lock()
		conn := s.conn
		s.mu.Unlock()
		if conn == nil {
			t.Fatalf("socket %d was never opened", i)
		}
		var out rawudp.Outbox
		if !s.sweep(later, &out) {
			t.Fatalf("socket %d idle past idleTimeout was not closed", i)
		}
	}
	time.Sleep(3 * sweepInterval) // the sweeps of the closed sockets end
	ask("after.example.")
	r := make(replies, 1)
	if err := c.Send(query(t, 7, "unanswered.example."), r); err != nil {
		t.Fatal(err)
	}
	if res := r.wait(t, 2*time.Second); !errors.Is(res.err, context.DeadlineExceeded) {
		t.Fatalf("an unanswered query on a reopened socket: %v, want its timeout", res.err)
	}
}

// A socket whose answers do not come back (the server's thread behind it is stuck) is
// given no more queries while the others have fewer waiting: with as many queries in flight
// at once as there are other sockets, every query after it is answered and none waits for
// the stuck one's timeout.
func TestUDPStuckSocketGetsNoMoreQueries(t *testing.T) {
	up, ch := fakeUDP(t)
	stuck := make(chan *net.UDPAddr, 1)
	go func() {
		var held *net.UDPAddr
		for p := range ch {
			m := new(dns.Msg)
			m.Unpack(p.msg)
			switch {
			case held == nil:
				held = p.from // the first socket's queries are never answered
				stuck <- held
			case p.from.Port == held.Port:
				t.Errorf("query %s was sent on the stuck socket", m.Question[0].Name)
			default:
				up.WriteToUDP(reply(t, p.msg, m.Question[0].Name), p.from)
			}
		}
	}()
	c := New(up.LocalAddr().String(), 5*time.Second, nil)
	const atOnce = udpSockets - 1 // one a socket: the others never have more waiting than the stuck one
	r := make(replies, atOnce+1)
	if err := c.Send(query(t, 1, "stuck.example."), r); err != nil {
		t.Fatal(err)
	}
	<-stuck
	for round := range 8 {
		want := map[string]bool{}
		for i := range atOnce {
			name := fmt.Sprintf("q%d-%d.example.", round, i)
			want[name] = true
			if err := c.Send(query(t, uint16(100+round*atOnce+i), name), r); err != nil {
				t.Fatal(err)
			}
		}
		for range atOnce {
			res := r.wait(t, time.Second)
			if res.err != nil {
				t.Fatalf("round %d: %v", round, res.err)
			}
			_, txt := marker(t, res.a.Bytes)
			if !want[txt] {
				t.Fatalf("round %d: answered %q, want one of %v", round, txt, want)
			}
			delete(want, txt)
		}
	}
}

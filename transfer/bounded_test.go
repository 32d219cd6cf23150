package transfer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/fanout"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/internal/dnstest"
)

// hostilePrimary answers every TCP request with what send writes, until send returns or
// the client goes away.
func hostilePrimary(t *testing.T, send func(q *dns.Msg, reply func(...dns.RR) error)) netip.AddrPort {
	t.Helper()
	return dnstest.ServeConns(t, func(c *net.TCPConn) {
		if q, err := readQuery(c); err == nil {
			send(q, func(rrs ...dns.RR) error { return writeReply(c, q, rrs) })
		}
	})
}

// readQuery reads one length-prefixed DNS message from c.
func readQuery(c net.Conn) (*dns.Msg, error) {
	raw, err := readTCPMessage(c)
	if err != nil {
		return nil, err
	}
	q := new(dns.Msg)
	return q, q.Unpack(raw)
}

// writeReply writes an authoritative answer to q carrying rrs, length-prefixed, to c.
func writeReply(c net.Conn, q *dns.Msg, rrs []dns.RR) error {
	m := new(dns.Msg).SetReply(q)
	m.Authoritative, m.Answer = true, rrs
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	return err
}

// sendRecords sends the SOA (serial 2) and n-1 A records, per records to a message.
func sendRecords(reply func(...dns.RR) error, n, per int) error {
	rrs := []dns.RR{testSOA(2)}
	for i := 1; i < n; i++ {
		rrs = append(rrs, testA(i))
	}
	for len(rrs) > 0 {
		k := min(per, len(rrs))
		if err := reply(rrs[:k]...); err != nil {
			return err
		}
		rrs = rrs[k:]
	}
	return nil
}

// readTCPMessage reads one length-prefixed DNS message (RFC 1035 §4.2.2).
func readTCPMessage(c net.Conn) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	raw := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, raw)
	return raw, err
}

func testSOA(serial uint32) *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns: "ns.example.com.", Mbox: "h.example.com.", Serial: serial, Refresh: 1, Retry: 1, Expire: 1, Minttl: 1}
}

func testA(i int) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: fmt.Sprintf("h%d.example.com.", i), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))}
}

// A primary sending empty messages forever holds the transfer no longer than the stall
// timeout: only records count as progress.
func TestEmptyMessagesAreNoProgress(t *testing.T) {
	addr := hostilePrimary(t, func(q *dns.Msg, reply func(...dns.RR) error) {
		reply(testSOA(2), testA(1))
		for reply() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	})
	c := &Client{DialTimeout: time.Second, StallTimeout: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s, err := c.AXFR(ctx, addr, "example.com.")
	if err == nil {
		_, err = drain(s)
	}
	if err == nil || !strings.Contains(err.Error(), "empty messages") || time.Since(start) > 2*time.Second {
		t.Errorf("after %v: %v; want a stall error naming the empty messages within about 300 ms", time.Since(start), err)
	}
}

// A primary trickling records, each within the stall timeout, is cut at
// transfer_max_duration.
func TestTransferMaxDuration(t *testing.T) {
	addr := hostilePrimary(t, func(q *dns.Msg, reply func(...dns.RR) error) {
		reply(testSOA(2))
		for i := 0; reply(testA(i)) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	c := &Client{DialTimeout: time.Second, StallTimeout: time.Second, MaxDuration: 500 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s, err := c.AXFR(ctx, addr, "example.com.")
	if err == nil {
		_, err = drain(s)
	}
	if err == nil || !strings.Contains(err.Error(), "transfer_max_duration") || time.Since(start) > 2*time.Second {
		t.Errorf("after %v: %v; want transfer_max_duration after about 500 ms", time.Since(start), err)
	}
}

// An IXFR whose difference sequence never ends stops at max_zone_records; what it
// spooled is released. A long valid IXFR spills to disk and decodes completely.
func TestIXFRSpoolsAndStopsAtCaps(t *testing.T) {
	const n = 3 * ixfrMemoryRecords
	endless := false
	addr := hostilePrimary(t, func(q *dns.Msg, reply func(...dns.RR) error) {
		if reply(testSOA(3), testSOA(1)) != nil {
			return
		}
		for i := 0; i < n; i += 100 {
			rrs := []dns.RR{}
			for j := i; j < i+100; j++ {
				rrs = append(rrs, testA(j))
			}
			if reply(rrs...) != nil {
				return
			}
		}
		reply(testSOA(3))
		for i := n; endless && reply(testA(i), testA(i+1)) == nil; i += 2 {
		}
		reply(testSOA(3))
	})
	dir := t.TempDir()
	c := &Client{DialTimeout: time.Second, StallTimeout: time.Second, MaxRecords: 2 * n, SpoolDir: dir}
	res, err := c.IXFR(context.Background(), addr, "example.com.", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changes.Spooled() {
		t.Errorf("a %d-record change set is not spooled", n)
	}
	if d, a := res.Changes.Size(); d != n || a != 0 || res.Changes.To() != 3 {
		t.Errorf("decoded %d deletions, %d additions to serial %d; want %d, 0, 3", d, a, res.Changes.To(), n)
	}
	res.Changes.Close()

	endless = true
	_, err = c.IXFR(context.Background(), addr, "example.com.", 1)
	if err == nil || !strings.Contains(err.Error(), "max_zone_records") {
		t.Errorf("endless IXFR: %v, want max_zone_records", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spool dir holds %v", ents)
	}
	if spools := openSpools(t); spools != 0 {
		t.Errorf("%d spool files still open", spools)
	}
}

// openSpools counts the unlinked IXFR spools this process holds open.
func openSpools(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open spool files: %v", err) // the check is part of the test, not optional
	}
	n := 0
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.Contains(target, ".dnsagent-ixfr-") {
			n++
		}
	}
	return n
}

// An IXFR whose version steps never reach the announced serial (it skips it) stops after
// maxIXFRSteps steps: each step costs memory.
func TestIXFRStepsNeverReachingTheSerialStop(t *testing.T) {
	addr := hostilePrimary(t, func(q *dns.Msg, reply func(...dns.RR) error) {
		if reply(testSOA(3)) != nil {
			return
		}
		for s := uint32(1); ; s++ {
			next := s + 1
			if next == 3 {
				next = 4
			}
			if reply(testSOA(s), testA(int(s)), testSOA(next), testA(int(next))) != nil {
				return
			}
			s = next - 1
		}
	})
	c := &Client{DialTimeout: time.Second, StallTimeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.IXFR(ctx, addr, "example.com.", 1)
	if err == nil || !strings.Contains(err.Error(), "version steps") {
		t.Errorf("IXFR of endless steps: %v, want a limit on version steps", err)
	}
}

// failsAfter is a backend whose Create fails once it has read that many records, as a
// database that goes away mid-transfer.
type failsAfter struct {
	*memory.Backend
	records int
}

func (f failsAfter) Create(_ context.Context, _ string, src backend.Source) error {
	for n := 0; n < f.records; {
		batch, err := src.Next()
		if err != nil {
			return err
		}
		n += len(batch)
	}
	return errors.New("database went away")
}

// A transfer that every backend stopped reading early (each member of a fan-out failed
// once it had the 3,000 records the primary sent in 20 messages before it hung) ends at
// once:
// the stream is interrupted instead of waiting out transfer_stall_timeout. Under -race
// this also checks that the interrupt leaves the read side, whose buffer goes back to a
// pool, to the reading goroutine.
func TestTransferAbandonedMidStreamEndsAtOnce(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	addr := hostilePrimary(t, func(q *dns.Msg, reply func(...dns.RR) error) {
		sendRecords(reply, 3000, 150)
		<-hang
	})
	c := &Client{DialTimeout: time.Second, StallTimeout: 30 * time.Second, conns: newConnPool()}
	st, err := c.AXFR(t.Context(), addr, "example.com.")
	if err != nil {
		t.Fatal(err)
	}
	// The members fail only once the fan-out's reader has handed them everything sent,
	// so that reader is then waiting for the primary, not stopping on its own.
	b, err := fanout.New([]fanout.Member{{Name: "a", Backend: failsAfter{memory.New(), 3000}},
		{Name: "b", Backend: failsAfter{memory.New(), 3000}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = b.Create(t.Context(), "example.com.", &timedSource{src: st})
	took := time.Since(start)
	st.Close()
	if err == nil || !strings.Contains(err.Error(), "database went away") {
		t.Fatalf("Create: %v, want the backends' failure", err)
	}
	if took > 5*time.Second {
		t.Fatalf("the failed create took %v: the hung transfer was not interrupted", took)
	}
	if _, err := st.Next(); err == nil {
		t.Fatal("the stream still reads after it was closed")
	}
}

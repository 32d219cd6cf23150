package transfer

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/internal/dnstest"
	"github.com/miekg/dns"
)

// resettingPrimary answers the first request of every connection (a SOA query with the
// zone's SOA, an AXFR with a 3,000-record zone in 20 messages) and resets the connection (RST, SO_LINGER 0) when a second request comes on it: a primary
// that dropped the connection's state meanwhile (restarted, or a firewall between timed it
// out). It counts the connections it accepted.
func resettingPrimary(t *testing.T) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	var accepted atomic.Int32
	addr := dnstest.ServeConns(t, func(c *net.TCPConn) {
		accepted.Add(1)
		for answered := 0; ; answered++ {
			q, err := readQuery(c)
			if err != nil {
				return
			}
			if answered == 1 {
				c.SetLinger(0) //nolint:errcheck // the close after return then resets
				return
			}
			reply := func(rrs ...dns.RR) error { return writeReply(c, q, rrs) }
			if q.Question[0].Qtype == dns.TypeAXFR {
				if sendRecords(reply, 3000, 150) != nil || reply(testSOA(2)) != nil {
					return
				}
			} else if reply(testSOA(2)) != nil {
				return
			}
		}
	})
	return addr, &accepted
}

// A kept connection the primary resets when the next request comes (ECONNRESET at the
// first read) costs nothing but a new connection: the request, a SOA query or an AXFR of
// many messages, is sent again on it.
func TestReusedConnectionResetIsRedialled(t *testing.T) {
	addr, accepted := resettingPrimary(t)
	c := &Client{DialTimeout: time.Second, StallTimeout: 5 * time.Second, conns: newConnPool()}
	for i := range 2 {
		soa, err := c.SOA(t.Context(), addr, "example.com.")
		if err != nil {
			t.Fatalf("SOA query %d: %v", i+1, err)
		}
		if soa.Serial != 2 {
			t.Fatalf("SOA query %d: serial %d, want 2", i+1, soa.Serial)
		}
		if n := axfrCount(t, c, addr, "example.com."); n != 3000 {
			t.Fatalf("AXFR %d: %d records, want 3000", i+1, n)
		}
	}
	// The first query opens a connection; each request after it finds the kept one,
	// which is reset, and opens another.
	if n := accepted.Load(); n != 4 {
		t.Fatalf("%d connections accepted, want 4", n)
	}
}

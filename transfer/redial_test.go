package transfer

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// resettingPrimary answers the first request of every connection with the zone's SOA and
// resets the connection (RST, SO_LINGER 0) when a second request comes on it: a primary
// that dropped the connection's state meanwhile (restarted, or a firewall between timed it
// out). It counts the connections it accepted.
func resettingPrimary(t *testing.T) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				for answered := 0; ; answered++ {
					raw, err := readTCPMessage(c)
					if err != nil {
						return
					}
					if answered == 1 {
						c.SetLinger(0) //nolint:errcheck // the close below then resets
						return
					}
					q := new(dns.Msg)
					if q.Unpack(raw) != nil {
						return
					}
					m := new(dns.Msg).SetReply(q)
					m.Authoritative = true
					m.Answer = []dns.RR{testSOA(5)}
					b, _ := m.Pack()
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)) //nolint:errcheck // the client sees it
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), &accepted
}

// A kept connection the primary resets when the next request comes (ECONNRESET at the
// first read) costs nothing but a new connection: the request is sent again on it.
func TestReusedConnectionResetIsRedialled(t *testing.T) {
	addr, accepted := resettingPrimary(t)
	c := &Client{DialTimeout: time.Second, StallTimeout: 5 * time.Second, conns: newConnPool()}
	for i := range 3 {
		soa, err := c.SOA(t.Context(), addr, "example.com.")
		if err != nil {
			t.Fatalf("SOA query %d: %v", i+1, err)
		}
		if soa.Serial != 5 {
			t.Fatalf("SOA query %d: serial %d, want 5", i+1, soa.Serial)
		}
	}
	// The first query opens a connection; the second and third each find the kept one,
	// which is reset, and open another.
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections accepted, want 3", n)
	}
}

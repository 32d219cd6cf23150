package transfer

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/internal/connpool"
	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
)

// reuseClient is a Client reusing its connections, as the Manager's does, closing them
// after idle unused.
func reuseClient(idle time.Duration) *Client {
	return &Client{DialTimeout: 2 * time.Second, StallTimeout: 5 * time.Second,
		conns: &connpool.Pool[netip.AddrPort]{MaxIdle: maxIdlePerMaster, IdleTimeout: idle}}
}

// axfrCount transfers zone from master by AXFR and counts its records, the closing SOA
// left out.
func axfrCount(t *testing.T, c *Client, master netip.AddrPort, zone string) int {
	t.Helper()
	st, err := c.AXFR(t.Context(), master, zone)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	for {
		rrs, err := st.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(rrs)
	}
}

// transferAll asks master for zone's SOA, an AXFR read to its end and an IXFR from the
// current serial, as a check, a CREATE and a refresh do.
func transferAll(t *testing.T, c *Client, master netip.AddrPort, zone string, records int) {
	t.Helper()
	ctx := context.Background()
	soa, err := c.SOA(ctx, master, zone)
	if err != nil {
		t.Fatal(err)
	}
	if got := axfrCount(t, c, master, zone); got < records {
		t.Fatalf("AXFR of %s: %d records, want at least %d", zone, got, records)
	}
	res, err := c.IXFR(ctx, master, zone, soa.Serial)
	if err != nil || !res.UpToDate {
		t.Fatalf("IXFR of %s from its current serial: %+v, %v; want up to date", zone, res, err)
	}
}

// SOA queries and transfers to one master share a connection (named, a zone of many TCP
// messages), and the agent closes it once idle: without reuse each left a port in
// TIME_WAIT for 60 s, and a burst of CREATEs ran out of ports.
func TestConnectionReusedAndClosedWhenIdle(t *testing.T) {
	harness.Require(t, "named")
	z := harness.NewZone("reuse.example.", 7, 3000)
	p := harness.StartPrimary(t, map[string]string{z.Name: z.Text()})
	master := netip.MustParseAddrPort(p.Addr())
	before, err := harness.TimeWaits(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := reuseClient(time.Second) // not idleConnTimeout: a loaded machine may pause that long between two exchanges
	for range 5 {
		transferAll(t, c, master, z.Name, 3000)
	}
	if n := c.conns.Idle(master); n != 1 {
		t.Errorf("%d idle connections after 15 exchanges one after another, want 1", n)
	}
	if tw, _ := harness.TimeWaits(p.Addr()); tw != before {
		t.Errorf("%d sockets toward the primary went to TIME_WAIT during 15 exchanges, want none closed", tw-before)
	}
	if !harness.Eventually(4*time.Second, 20*time.Millisecond, func() bool { return c.conns.Idle(master) == 0 }) {
		t.Fatal("the idle connection was kept past its idle timeout")
	}
	if tw, _ := harness.TimeWaits(p.Addr()); tw != before+1 {
		t.Errorf("%d sockets went to TIME_WAIT, want 1: the agent closes the idle connection itself", tw-before)
	}
}

// Knot and NSD keep a connection open after an answer too (RFC 5936 §4.1): the SOA
// queries, AXFRs and IXFRs one after another all go over the first connection.
func TestConnectionReusedByKnotAndNSD(t *testing.T) {
	for _, c := range []struct {
		name  string
		start func(testing.TB, harness.ServerOptions) *harness.Server
	}{{"knot", harness.StartKnot}, {"nsd", harness.StartNSD}} {
		t.Run(c.name, func(t *testing.T) {
			z := harness.NewZone("reuse.example.", 7, 3000)
			s := c.start(t, harness.ServerOptions{Zones: map[string]string{z.Name: z.Text()}})
			master := netip.MustParseAddrPort(s.Addr())
			cl := reuseClient(time.Minute)
			var ports []string
			for range 3 {
				transferAll(t, cl, master, z.Name, 3000)
				conn := cl.conns.Get(master)
				if conn == nil {
					t.Fatal("no connection kept after a complete exchange")
				}
				ports = append(ports, conn.LocalAddr().String())
				cl.conns.Put(master, conn)
			}
			if ports[0] != ports[1] || ports[1] != ports[2] {
				t.Errorf("the exchanges went over %v, want one connection throughout", ports)
			}
		})
	}
}

// A primary that takes one query a connection (the fault proxy) closes a reused
// connection at the next request: the request is sent again, as it was signed, on a new
// connection, and every exchange of a zone of many messages succeeds, signed or not.
func TestOneQueryPerConnectionPrimary(t *testing.T) {
	harness.Require(t, "named")
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("tsig=%v", signed), func(t *testing.T) {
			z := harness.NewZone("one.example.", 3, 3000)
			opts := harness.PrimaryOptions{Zones: map[string]string{z.Name: z.Text()}}
			c := reuseClient(time.Minute) // every connection is still pooled at the next request
			if signed {
				k := harness.NewTSIGKey(t, "one-key", "hmac-sha256")
				opts.TransferKeys = []harness.TSIGKey{k}
				c.Key = &tsigkey.Key{Name: "one-key.", Algorithm: dns.HmacSHA256, Secret: k.Secret}
			}
			proxy := harness.StartDNSProxy(t, harness.StartPrimaryWith(t, opts).Addr())
			for range 3 {
				transferAll(t, c, netip.MustParseAddrPort(proxy.Addr()), z.Name, 3000)
			}
			if proxy.Others() != 3 || proxy.AXFRs() != 3 || proxy.IXFRs() != 3 {
				t.Errorf("the primary saw %d SOA queries, %d AXFRs and %d IXFRs, want 3 each", proxy.Others(), proxy.AXFRs(), proxy.IXFRs())
			}
			if proxy.Reused() != 8 {
				t.Errorf("%d requests came on a reused connection, want 8 (all but the first)", proxy.Reused())
			}
		})
	}
}

// A primary that runs as many outgoing transfers as it allows answers the next SERVFAIL
// (named: transfers-out): the transfer is asked for again after a pause, signed anew
// with TSIG, and every concurrent transfer of a zone of many messages gets through.
func TestTransferAskedAgainWhenPrimaryBusy(t *testing.T) {
	harness.Require(t, "named")
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("tsig=%v", signed), func(t *testing.T) {
			z := harness.NewZone("busy.example.", 5, 5000)
			opts := harness.PrimaryOptions{Zones: map[string]string{z.Name: z.Text()}, ExtraOptions: "transfers-out 1;"}
			c := reuseClient(idleConnTimeout)
			if signed {
				k := harness.NewTSIGKey(t, "busy-key", "hmac-sha256")
				opts.TransferKeys = []harness.TSIGKey{k}
				c.Key = &tsigkey.Key{Name: "busy-key.", Algorithm: dns.HmacSHA256, Secret: k.Secret}
			}
			master := netip.MustParseAddrPort(harness.StartPrimaryWith(t, opts).Addr())
			errs := make(chan error, 4)
			for range cap(errs) {
				go func() {
					st, err := c.AXFR(context.Background(), master, z.Name)
					if err == nil {
						for err == nil {
							_, err = st.Next()
						}
						st.Close()
					}
					if err == io.EOF {
						err = nil
					}
					errs <- err
				}()
			}
			for range cap(errs) {
				if err := <-errs; err != nil {
					t.Errorf("a transfer while the primary allows one at a time: %v", err)
				}
			}
		})
	}
}

// Two masters that disagree (serials 7 and 9 of one zone), asked in turn: each answer
// comes from the master asked, over that master's own kept connection.
func TestReusedConnectionsStayWithTheirMaster(t *testing.T) {
	harness.Require(t, "named")
	masters := map[uint32]netip.AddrPort{}
	for _, serial := range []uint32{7, 9} {
		z := harness.NewZone("two.example.", serial, 2000)
		masters[serial] = netip.MustParseAddrPort(harness.StartPrimary(t, map[string]string{z.Name: z.Text()}).Addr())
	}
	c := reuseClient(time.Minute)
	for range 3 {
		for serial, master := range masters {
			soa, err := c.SOA(context.Background(), master, "two.example.")
			if err != nil || soa.Serial != serial {
				t.Fatalf("SOA from the master at %d: %v, %v", serial, soa, err)
			}
			st, err := c.AXFR(context.Background(), master, "two.example.")
			if err != nil {
				t.Fatal(err)
			}
			if st.Serial() != serial {
				t.Errorf("AXFR from the master at %d brought serial %d", serial, st.Serial())
			}
			for err == nil {
				_, err = st.Next()
			}
			st.Close()
			if err != io.EOF {
				t.Fatal(err)
			}
		}
	}
	for serial, master := range masters {
		if n := c.conns.Idle(master); n != 1 {
			t.Errorf("%d idle connections to the master at %d, want 1", n, serial)
		}
	}
}

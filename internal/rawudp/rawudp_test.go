package rawudp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// listenWildcard binds network's wildcard address with packet info on, as the agent's
// listener does, and wraps it.
func listenWildcard(t *testing.T, network, addr string) (*net.UDPConn, *Conn) {
	t.Helper()
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("no %s socket on %s: %v", network, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) //nolint:errcheck // one family fails
	ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) //nolint:errcheck
	raw, err := New(conn)
	if err != nil {
		t.Fatal(err)
	}
	return conn, raw
}

// A socket on a wildcard address, asked on one loopback address, answers from that
// address (ReplyControl); without the control message the kernel picks 127.0.0.1 or ::1,
// which a client that checks where its answer came from (as resolvers do) drops.
func TestReplyLeavesFromTheAddressAsked(t *testing.T) {
	for _, tc := range []struct{ network, listen, client, asked string }{
		{"udp4", "0.0.0.0:0", "127.0.0.1:0", "127.0.0.3"},
		{"udp", "[::]:0", "127.0.0.1:0", "127.0.0.3"}, // dual stack: an IPv4-mapped peer
		{"udp6", "[::]:0", "[::1]:0", "::1"},
	} {
		t.Run(tc.network+" "+tc.asked, func(t *testing.T) {
			server, raw := listenWildcard(t, tc.network, tc.listen)
			port := uint16(server.LocalAddr().(*net.UDPAddr).Port)
			asked := netip.AddrPortFrom(netip.MustParseAddr(tc.asked), port)
			client, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.client)))
			if err != nil {
				t.Fatalf("no client socket on %s: %v", tc.client, err)
			}
			defer client.Close()
			client.SetDeadline(time.Now().Add(3 * time.Second))
			for _, withControl := range []bool{true, false} {
				if _, err := client.WriteToUDPAddrPort([]byte("query"), asked); err != nil {
					t.Fatal(err)
				}
				buf, oob := make([]byte, 512), make([]byte, 128)
				server.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, oobn, from, err := raw.ReadMsg(buf, oob)
				if err != nil || string(buf[:n]) != "query" {
					t.Fatalf("ReadMsg: %q, %v", buf[:n], err)
				}
				if from.Addr().Unmap() != netip.MustParseAddrPort(client.LocalAddr().String()).Addr().Unmap() ||
					from.Port() != uint16(client.LocalAddr().(*net.UDPAddr).Port) {
					t.Fatalf("datagram from %v, sent from %v", from, client.LocalAddr())
				}
				control := ReplyControl(oob[:oobn])
				if control == nil {
					t.Fatalf("no packet info among %d bytes of control messages", oobn)
				}
				if !withControl {
					control = nil
				}
				if err := raw.WriteMsg([]byte("answer"), control, from); err != nil {
					t.Fatal(err)
				}
				n, source, err := client.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				fromAsked := source.Addr().Unmap() == asked.Addr() && source.Port() == port
				if string(buf[:n]) != "answer" || fromAsked != (withControl || tc.asked == "::1") {
					t.Errorf("with control %v: %q from %v, asked %v", withControl, buf[:n], source, asked)
				}
			}
		})
	}
}

// A connected socket reports the destination's ICMP refusal on the next read, and a read
// past its deadline fails as a timeout: the relay's reader depends on both.
func TestConnectedRefusedAndDeadline(t *testing.T) {
	closed, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dest := closed.LocalAddr().(*net.UDPAddr)
	closed.Close()
	conn, err := net.DialUDP("udp4", nil, dest)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := New(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	if _, err := raw.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after a query to a closed port: %v, want connection refused", err)
	}
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := raw.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read with nothing sent: %v, want the deadline's timeout", err)
	}
	if err := raw.WriteMsg([]byte("x"), nil, netip.MustParseAddrPort("[2001:db8::1]:53")); err == nil {
		t.Error("an IPv6 destination on an IPv4 socket was accepted")
	}
}

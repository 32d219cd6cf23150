package rawudp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

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

// readSoon calls ReadNow until it reads or fails, for up to 3 s.
func readSoon(batch *Batch) (int, error) {
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(time.Millisecond) {
		n, err := batch.ReadNow()
		if n > 0 || err != nil || time.Now().After(deadline) {
			return n, err
		}
	}
}

// readOne reads one datagram with a Batch.
func readOne(t *testing.T, raw *Conn) (msg, oob []byte, from netip.AddrPort) {
	t.Helper()
	batch := raw.NewBatch(1, 512, 128)
	n, err := readSoon(batch)
	if err != nil || n != 1 {
		t.Fatalf("read %d datagrams: %v", n, err)
	}
	return batch.Datagram(0)
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
				msg, oob, from := readOne(t, raw)
				if string(msg) != "query" {
					t.Fatalf("read %q", msg)
				}
				if from.Addr().Unmap() != netip.MustParseAddrPort(client.LocalAddr().String()).Addr().Unmap() ||
					from.Port() != uint16(client.LocalAddr().(*net.UDPAddr).Port) {
					t.Fatalf("datagram from %v, sent from %v", from, client.LocalAddr())
				}
				control := ReplyControl(oob)
				if control == nil {
					t.Fatalf("no packet info among %d bytes of control messages", len(oob))
				}
				if !withControl {
					control = nil
				}
				if err := raw.WriteMsg([]byte("answer"), control, from); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 512)
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
// with nothing waiting returns at once: the relay's reader depends on both.
func TestConnectedRefusedAndNothingWaiting(t *testing.T) {
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
	batch := raw.NewBatch(4, 512, 0)
	if _, err := readSoon(batch); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after a query to a closed port: %v, want connection refused", err)
	}
	if n, err := batch.ReadNow(); n != 0 || err != nil {
		t.Errorf("read with nothing sent: %d datagrams, %v; want none and no error", n, err)
	}
	if err := raw.WriteMsg([]byte("x"), nil, netip.MustParseAddrPort("[2001:db8::1]:53")); err == nil {
		t.Error("an IPv6 destination on an IPv4 socket was accepted")
	}
}

// A Batch takes the datagrams waiting, up to its size, each with its own bytes, source
// and packet info, and leaves the rest for the next ReadNow.
func TestBatchReadsWhatWaits(t *testing.T) {
	server, raw := listenWildcard(t, "udp4", "0.0.0.0:0")
	port := uint16(server.LocalAddr().(*net.UDPAddr).Port)
	var clients []*net.UDPConn
	for _, a := range []string{"127.0.0.5", "127.0.0.6"} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(a)})
		if err != nil {
			t.Fatalf("no client socket on %s: %v", a, err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	type sent struct {
		msg   string
		from  netip.AddrPort
		asked netip.Addr
	}
	var want []sent
	for i := range 5 {
		c := clients[i%2]
		asked := netip.AddrFrom4([4]byte{127, 0, 0, byte(7 + i)})
		msg := strings.Repeat(string(rune('a'+i)), 10*(i+1)) // lengths differ
		if _, err := c.WriteToUDPAddrPort([]byte(msg), netip.AddrPortFrom(asked, port)); err != nil {
			t.Fatal(err)
		}
		want = append(want, sent{msg, netip.MustParseAddrPort(c.LocalAddr().String()), asked})
	}
	time.Sleep(50 * time.Millisecond) // all five queued on loopback

	batch := raw.NewBatch(3, 512, 128)
	var got []sent
	for _, size := range []int{3, 2} {
		n, err := batch.ReadNow()
		if err != nil || n != size {
			t.Fatalf("read %d datagrams (%v), want %d", n, err, size)
		}
		for i := range n {
			msg, oob, from := batch.Datagram(i)
			info := ReplyControl(oob)
			if info == nil {
				t.Fatalf("datagram %q: no packet info", msg)
			}
			asked := (*syscall.Inet4Pktinfo)(unsafe.Pointer(&info[syscall.CmsgLen(0)])).Spec_dst
			got = append(got, sent{string(msg), from, netip.AddrFrom4(asked)})
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("read %v\nsent %v", got, want)
	}
	if n, err := batch.ReadNow(); n != 0 || err != nil {
		t.Errorf("read with nothing left: %d datagrams, %v; want none and no error", n, err)
	}
}

// result records what an Outbox told a Sender.
type result struct {
	name string
	errs *[]string
}

func (r result) Sent(err error) {
	if err != nil {
		*r.errs = append(*r.errs, r.name+": "+err.Error())
		return
	}
	*r.errs = append(*r.errs, r.name+": sent")
}

// An Outbox sends each socket's datagrams in order, from the address each was asked on,
// and tells every Sender its own outcome: a datagram the socket cannot address fails
// alone, those around it still go out.
func TestOutboxSendsInOrderEachTold(t *testing.T) {
	server, raw := listenWildcard(t, "udp4", "0.0.0.0:0")
	otherConn, other := listenWildcard(t, "udp4", "127.0.0.1:0")
	port := uint16(server.LocalAddr().(*net.UDPAddr).Port)
	otherPort := otherConn.LocalAddr().(*net.UDPAddr).Port
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	to := netip.MustParseAddrPort(client.LocalAddr().String())

	// The packet info of a datagram asked on 127.0.0.9, as the server would read it.
	if _, err := client.WriteToUDPAddrPort([]byte("q"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), port)); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, oob, _ := readOne(t, raw)
	asked9 := ReplyControl(oob)

	var told []string
	var out Outbox
	for _, m := range []struct {
		conn *Conn
		name string
		oob  []byte
		to   netip.AddrPort
	}{
		{raw, "1", nil, to},
		{raw, "2", asked9, to},
		{raw, "v6", nil, netip.MustParseAddrPort("[2001:db8::1]:53")},
		{raw, "3", nil, to},
		{other, "4", nil, to},
		{raw, "5", asked9, to},
	} {
		out.Add(m.conn, []byte(m.name), m.oob, m.to, result{m.name, &told})
	}
	out.Flush()
	want := []string{"1: sent", "2: sent", "v6: sendmsg: an IPv6 destination on an IPv4 socket", "3: sent", "4: sent", "5: sent"}
	if !slices.Equal(told, want) {
		t.Errorf("Senders told %q, want %q", told, want)
	}

	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got []string
	buf := make([]byte, 512)
	for range 5 {
		n, from, err := client.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, fmt.Sprintf("%s from %v", buf[:n], from))
	}
	want = []string{fmt.Sprintf("1 from 127.0.0.1:%d", port), fmt.Sprintf("2 from 127.0.0.9:%d", port),
		fmt.Sprintf("3 from 127.0.0.1:%d", port), fmt.Sprintf("4 from 127.0.0.1:%d", otherPort),
		fmt.Sprintf("5 from 127.0.0.9:%d", port)}
	if !slices.Equal(got, want) {
		t.Errorf("received %q, want %q", got, want)
	}
	told = told[:0]
	out.Flush() // nothing left
	if len(told) != 0 {
		t.Errorf("a second Flush told %q", told)
	}
}

// Drain takes at most Turn batches, so a socket with more waiting leaves the rest for its
// next turn instead of keeping the Poller's goroutine from the other sockets; a short
// batch ends the turn early.
func TestDrainTakesOneTurn(t *testing.T) {
	server, raw := listenWildcard(t, "udp4", "127.0.0.1:0")
	to := server.LocalAddr().(*net.UDPAddr)
	const size, sent = 4, 4*Turn + 3
	for i := range sent {
		if _, err := server.WriteToUDP([]byte{byte(i)}, to); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // all queued on loopback
	batch := raw.NewBatch(size, 512, 128)
	var got []byte
	var batches int
	drain := func() {
		t.Helper()
		batches = 0
		if err := batch.Drain(func(n int) {
			batches++
			for i := range n {
				msg, _, _ := batch.Datagram(i)
				got = append(got, msg[0])
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	drain()
	if len(got) != size*Turn || batches != Turn {
		t.Fatalf("one turn read %d datagrams in %d batches, want %d in %d", len(got), batches, size*Turn, Turn)
	}
	drain()
	if len(got) != sent || batches != 1 {
		t.Fatalf("the next turn read %d datagrams in all (%d batches this turn), want %d (1)", len(got), batches, sent)
	}
	for i, b := range got {
		if int(b) != i {
			t.Fatalf("datagram %d read as %d: order or bytes lost", i, b)
		}
	}
}

// A link-local source carries its interface (the sockaddr's scope id) into its address as
// a zone, and a reply to it names that interface again: without it sendmsg fails
// (EINVAL) and a worker on fe80::...%eth0 would never get an answer. No traffic: loopback
// has no link-local address.
func TestLinkLocalSourceKeepsItsScope(t *testing.T) {
	raw := syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Scope_id: 7,
		Addr: netip.MustParseAddr("fe80::1").As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], 5353)
	from := addrPort(&raw)
	if from.Addr().Zone() != "7" || from.Port() != 5353 {
		t.Fatalf("source %v, want fe80::1%%7 port 5353", from)
	}
	c := &Conn{v6: true}
	var name syscall.RawSockaddrInet6
	if _, err := c.sockaddr(&name, from); err != nil {
		t.Fatal(err)
	}
	if name.Scope_id != 7 || name.Addr != raw.Addr || name.Port != raw.Port {
		t.Errorf("reply sockaddr %+v, want the source's, scope id 7", name)
	}
	if _, err := c.sockaddr(&name, netip.MustParseAddrPort("[2001:db8::1]:53")); err != nil || name.Scope_id != 0 {
		t.Errorf("a global destination: scope id %d (%v), want none", name.Scope_id, err)
	}
}

package service

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// sendFrom sends n datagrams of size bytes from source to the listener's address.
func sendFrom(t *testing.T, source string, to net.Addr, n, size int) {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(source)}, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	for range n {
		c.Write(msg) // a full receive buffer drops it: what the tests count
	}
}

// received counts the datagrams waiting on each socket of l.
func received(l *udpListener) []int {
	counts := make([]int, len(l.conns))
	buf := make([]byte, 2048)
	for i, c := range l.conns {
		for {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				break
			}
			counts[i]++
		}
	}
	return counts
}

// Each allow-list entry's sources reach their own socket (entry i: socket i mod 4), every
// other source the last one, over IPv4 and IPv6, and a SIGHUP's new lists re-steer them.
func TestUDPSourcesSteeredByAllowListEntry(t *testing.T) {
	entries := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("127.0.0.3/32")}
	for _, tc := range []struct {
		listen  string
		sources map[string]int // source -> socket
	}{
		{"127.0.0.1:0", map[string]int{"127.0.0.1": 0, "127.0.0.3": 2, "127.0.0.2": 3}},
		{"[::1]:0", map[string]int{"::1": 1}},
	} {
		l, err := listenUDP(tc.listen, entries)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if len(l.conns) != 4 || l.unsteered != nil {
			t.Fatalf("%s: %d sockets (%v), want 3 entries' and the strangers'", tc.listen, len(l.conns), l.unsteered)
		}
		for source, want := range tc.sources {
			sendFrom(t, source, l.conns[0].LocalAddr(), 3, 12)
			got := received(l)
			if got[want] != 3 {
				t.Errorf("%s: from %s, datagrams per socket %v, want all 3 on socket %d", tc.listen, source, got, want)
			}
		}
	}

	l, err := listenUDP("127.0.0.1:0", entries)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.steer([]netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}); err != nil {
		t.Fatal(err)
	}
	sendFrom(t, "127.0.0.2", l.conns[0].LocalAddr(), 3, 12)
	sendFrom(t, "127.0.0.1", l.conns[0].LocalAddr(), 2, 12)
	if got := received(l); got[0] != 3 || got[3] != 2 {
		t.Errorf("after new lists: datagrams per socket %v, want 127.0.0.2's 3 on socket 0, 127.0.0.1's 2 on the strangers' socket", got)
	}
}

// A stranger that fills the kernel's receive queue while the agent does not keep up makes
// it drop an allowed source's datagrams when they share a socket; steered, none is lost.
func TestUDPStrangerFloodDropsNoAllowedDatagram(t *testing.T) {
	allowed := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	one, err := listenOne("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	steered, err := listenUDP("127.0.0.1:0", allowed)
	if err != nil {
		t.Fatal(err)
	}
	defer steered.Close()
	for _, tc := range []struct {
		name string
		l    *udpListener
		want int
	}{{"one socket", one, 0}, {"steered", steered, 20}} {
		for _, c := range tc.l.conns {
			c.SetReadBuffer(64 << 10)
		}
		// Nobody reads: the stranger fills every buffer it reaches, then the allowed
		// source sends.
		sendFrom(t, "127.0.0.2", tc.l.conns[0].LocalAddr(), 2000, 512)
		sendFrom(t, "127.0.0.1", tc.l.conns[0].LocalAddr(), 20, 100)
		got := 0
		buf := make([]byte, 2048)
		for {
			tc.l.conns[0].SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			n, from, err := tc.l.conns[0].ReadFrom(buf)
			if err != nil {
				break
			}
			if n == 100 && from.(*net.UDPAddr).IP.Equal(net.ParseIP("127.0.0.1")) {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("%s: %d of the allowed source's 20 datagrams received, want %d", tc.name, got, tc.want)
		}
	}
}

package service

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/middleware"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// gatedServers listens on a loopback port with the gate in front of servers that answer
// every request NOERROR; allow is both allow lists. The servers are not started.
func gatedServers(t *testing.T, allow string) (*udpListener, []*dns.Server) {
	t.Helper()
	acl, err := middleware.ParseACL([]string{allow})
	if err != nil {
		t.Fatal(err)
	}
	s := listenerService(testConfig(t, ""), middleware.NewAllowLists(acl, acl), zap.NewNop())
	udp, err := listenUDP("127.0.0.1:0", s.allow.Entries())
	if err != nil {
		t.Fatal(err)
	}
	servers, err := s.udpServers(udp, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		w.WriteMsg(new(dns.Msg).SetReply(r))
	}))
	if err != nil {
		t.Fatal(err)
	}
	return udp, servers
}

// Every datagram a server takes from the gate gives its slot back, whatever becomes of
// it: answered, FORMERR from the library (sections that do not parse), or never handed
// out (a response, a short datagram). A leak would end with a listener that serves nobody.
func TestUDPGateSlotsComeBack(t *testing.T) {
	for _, tc := range []struct {
		name, allow string
		lane        int
	}{
		{"allowed source", "127.0.0.0/8", 0},
		{"stranger", "192.0.2.1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			udp, servers := gatedServers(t, tc.allow)
			pc := udp.conns[0]
			for _, srv := range servers {
				go srv.ActivateAndServe()
				t.Cleanup(func() { srv.Shutdown() })
			}
			lane := servers[tc.lane].Handler.(gatedHandler).lane

			c, err := net.Dial("udp", pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			query, _ := new(dns.Msg).SetQuestion("example.com.", dns.TypeSOA).Pack()
			garbage := append(append([]byte(nil), query[:12]...), 0xc0, 0xff, 0, 1)
			response := append([]byte(nil), query...)
			response[2] |= 0x80
			const rounds = 10
			for range rounds {
				for _, m := range [][]byte{query, garbage, response, query[:5]} {
					c.Write(m)
				}
				time.Sleep(2 * time.Millisecond) // the stranger lane serves one per millisecond
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			replies := 0
			for buf := make([]byte, 512); replies < 2*rounds; replies++ {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			if replies != 2*rounds {
				t.Errorf("%d replies (answers and FORMERRs), want %d", replies, 2*rounds)
			}
			// One slot is the server loop's own, waiting for the next datagram.
			deadline := time.Now().Add(2 * time.Second)
			for len(lane.slots) > 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := len(lane.slots); n > 1 {
				t.Errorf("%d slots still taken after every datagram was served, want 1 (the loop waiting)", n)
			}
		})
	}
}

// A queue serves its sources in turn, and no source may fill more than a quarter of it.
func TestUDPQueueServesSourcesInTurn(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	q := newQueue(16, newDroppedCounter().WithLabelValues("test"))
	pushed := 0
	for _, src := range []netip.Addr{a, a, a, a, a, a, b, c, c} {
		if q.room(src) {
			q.push(datagram{source: src})
			pushed++
		}
	}
	if pushed != 7 {
		t.Errorf("%d queued, want 7: a flooding source holds 4 of 16 at most", pushed)
	}
	var order []netip.Addr
	for d, ok := q.pop(); ok; d, ok = q.pop() {
		order = append(order, d.source)
	}
	want := []netip.Addr{a, b, c, a, c, a, a}
	if len(order) != len(want) {
		t.Fatalf("popped %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("popped %v, want %v", order, want)
		}
	}
	if !q.room(a) || q.n != 0 || len(q.turn) != 0 || len(q.bySource) != 0 {
		t.Errorf("queue not empty after popping everything: n %d, turn %v", q.n, q.turn)
	}
}

// A server shuts down at once, though the gate, not the server, reads the socket: the
// gate takes the past read deadline dns.Server.Shutdown sets as its stop. Else each
// server would wait out its read timeout (2 s), and the agent's stop with it.
func TestUDPGateStopsWithTheServers(t *testing.T) {
	udp, servers := gatedServers(t, "127.0.0.0/8")
	defer udp.Close()
	served := make(chan error, len(servers))
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { served <- srv.ActivateAndServe() }()
		<-started
	}
	// Served: the gate reads.
	if _, err := dns.Exchange(new(dns.Msg).SetQuestion("example.com.", dns.TypeSOA), udp.conns[0].LocalAddr().String()); err != nil {
		t.Fatalf("no answer before the shutdown: %v", err)
	}
	begin := time.Now()
	for _, srv := range servers {
		if err := srv.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	for range servers {
		<-served
	}
	if took := time.Since(begin); took > 500*time.Millisecond {
		t.Errorf("the servers took %v to shut down, want at once (their read timeout is 2 s)", took.Round(time.Millisecond))
	}
}

package tests

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

// sameAnswer sends q to the agent and to the destination directly over network and
// requires the same answer, with the client's id.
func sameAnswer(t *testing.T, network, agent, dest string, q *dns.Msg) *dns.Msg {
	t.Helper()
	via, err := harness.Exchange(network, agent, q, 3*time.Second)
	if err != nil {
		t.Errorf("%s %s %s via the agent: %v", network, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], err)
		return nil
	}
	direct, err := harness.Exchange(network, dest, q, 3*time.Second)
	if err != nil {
		t.Fatalf("%s query to the destination directly: %v", network, err)
	}
	if via.Id != q.Id {
		t.Errorf("%s: reply id %d, want the client's %d", network, via.Id, q.Id)
	}
	if a, b := msgString(via), msgString(direct); a != b {
		t.Errorf("%s %s %s: the agent's answer differs from the destination's\nvia agent:\n%s\ndirect:\n%s",
			network, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], a, b)
	}
	return via
}

// Acceptance test 5: queries are answered by query_destination over UDP and TCP, with
// the client's id; refused for sources outside allow_query and when no destination is set.
func TestAT05QueryPassthrough(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024050501, 30)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: p.Addr()})

	for i, network := range []string{"udp", "tcp"} {
		q := new(dns.Msg)
		q.SetQuestion(zone, dns.TypeSOA)
		q.Id = uint16(0x0500 + i)
		q.RecursionDesired = false // as Designate's serial polling sends it
		if r := sameAnswer(t, network, a.Addr(), p.Addr(), q); r != nil {
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != z.Serial {
				t.Errorf("%s SOA via the agent: %v", network, r)
			}
		}
		q2 := new(dns.Msg)
		q2.SetQuestion("r8.example.com.", dns.TypeA) // two A records
		q2.Id = uint16(0x0510 + i)
		sameAnswer(t, network, a.Addr(), p.Addr(), q2)
		q3 := new(dns.Msg)
		q3.SetQuestion("nonexistent.example.com.", dns.TypeA)
		q3.Id = uint16(0x0520 + i)
		if r := sameAnswer(t, network, a.Addr(), p.Addr(), q3); r != nil && r.Rcode != dns.RcodeNameError {
			t.Errorf("%s NXDOMAIN query via the agent: rcode %s", network, dns.RcodeToString[r.Rcode])
		}
	}

	// allow_query defaults to allow_notify: 127.0.0.2 may not use the agent as a relay.
	for _, network := range []string{"udp", "tcp"} {
		req := harness.QueryMsg(0x0530, zone, dns.TypeSOA, true)
		var r []byte
		var err error
		if network == "udp" {
			r, err = harness.ExchangeUDPFrom("127.0.0.2", a.Addr(), req, 3*time.Second)
		} else {
			r, err = harness.ExchangeTCPFrom("127.0.0.2", a.Addr(), req, 3*time.Second)
		}
		if err != nil {
			t.Errorf("%s query from 127.0.0.2: %v", network, err)
			continue
		}
		expectBytes(t, network+" query from a source outside allow_query", r, harness.Reply(req, 0x8105))
	}

	t.Run("explicit allow_query", func(t *testing.T) {
		b := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", AllowQuery: "127.0.0.2", QueryDestination: p.Addr()})
		req := harness.QueryMsg(0x0540, zone, dns.TypeSOA, false)
		r, err := harness.ExchangeUDPFrom("127.0.0.2", b.Addr(), req, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m := unpack(t, "query from 127.0.0.2", r); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Errorf("query from 127.0.0.2 (in allow_query): %v", m)
		}
		r, err = harness.ExchangeUDPFrom("127.0.0.1", b.Addr(), req, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		expectBytes(t, "query from 127.0.0.1 (not in allow_query)", r, harness.Reply(req, 0x8005))
	})

	t.Run("no query_destination", func(t *testing.T) {
		b := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"})
		for _, rd := range []bool{true, false} {
			req := harness.QueryMsg(0x0550, zone, dns.TypeSOA, rd)
			want := uint16(0x8005)
			if rd {
				want = 0x8105
			}
			expectBytes(t, "UDP query without destination", udp(t, b.Addr(), req, 3*time.Second), harness.Reply(req, want))
			expectBytes(t, "TCP query without destination", tcp(t, b.Addr(), req, 3*time.Second), harness.Reply(req, want))
		}
	})
	a.CheckAlive(t)
}

// Acceptance test 10: a truncated UDP answer is relayed with TC as the destination sent
// it; AXFR and IXFR queries are REFUSED; UPDATE, STATUS, IQUERY and unknown commands are
// REFUSED with opcode and question echoed.
func TestAT10TruncationAndRefusals(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024101001, 30)
	z.Extra = harness.BigTXT("big.example.com.", 8) // ~850 bytes of TXT: no fit in 512
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: p.Addr()})

	// No EDNS: the destination truncates, the agent relays TC as it is.
	q := new(dns.Msg)
	q.SetQuestion("big.example.com.", dns.TypeTXT)
	q.Id = 0x1001
	direct, err := harness.Exchange("udp", p.Addr(), q, 3*time.Second)
	if err != nil || !direct.Truncated {
		t.Fatalf("test setup: the destination's UDP answer is not truncated: %v %v", err, direct)
	}
	// Over TCP the client gets the whole RRset.
	full := sameAnswer(t, "tcp", a.Addr(), p.Addr(), q)
	if full != nil && (full.Truncated || len(full.Answer) != 8) {
		t.Errorf("TCP answer via the agent: TC %v, %d records, want 8", full.Truncated, len(full.Answer))
	}
	// named fills a truncated answer with as many records as fit, starting at a rotating
	// position: compare the header, the question and the number of records, and require
	// each record to belong to the RRset.
	via, err := harness.Exchange("udp", a.Addr(), q, 3*time.Second)
	if err != nil {
		t.Fatalf("UDP query via the agent: %v", err)
	}
	if !via.Truncated {
		t.Errorf("UDP answer via the agent lost the TC bit:\n%s", via)
	}
	hv, hd := via.MsgHdr, direct.MsgHdr
	if hv != hd || len(via.Question) != 1 || via.Question[0] != direct.Question[0] ||
		len(via.Answer) != len(direct.Answer) || len(via.Ns) != len(direct.Ns) || len(via.Extra) != len(direct.Extra) {
		t.Errorf("truncated UDP answer via the agent differs from the destination's:\nvia agent:\n%s\ndirect:\n%s", via, direct)
	}
	if full != nil {
		in := map[string]bool{}
		for _, rr := range full.Answer {
			in[rr.String()] = true
		}
		for _, rr := range via.Answer {
			if !in[rr.String()] {
				t.Errorf("truncated answer via the agent holds a record not in the RRset: %s", rr)
			}
		}
	}

	// Zone transfers are never relayed.
	axfr := new(dns.Msg)
	axfr.SetAxfr(zone)
	axfr.Id = 0x1002
	ixfr := new(dns.Msg)
	ixfr.SetIxfr(zone, z.Serial-1, "ns1.example.com.", "hostmaster.example.com.")
	ixfr.Id = 0x1003
	for _, m := range []*dns.Msg{axfr, ixfr} {
		for _, network := range []string{"udp", "tcp"} {
			r, err := harness.Exchange(network, a.Addr(), m, 3*time.Second)
			name := network + " " + dns.TypeToString[m.Question[0].Qtype]
			if err != nil {
				t.Errorf("%s via the agent: %v", name, err)
				continue
			}
			if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 || r.Id != m.Id || !r.Response {
				t.Errorf("%s via the agent: want REFUSED with no records, got %s with %d answers (id %d)\n%s",
					name, dns.RcodeToString[r.Rcode], len(r.Answer), r.Id, r)
			}
		}
	}

	// Opcodes nobody handles: REFUSED with the opcode and question echoed.
	soaQ := harness.Question(zone, dns.TypeSOA, dns.ClassINET)
	cases := []struct {
		name      string
		req       []byte
		wantFlags uint16
	}{
		{"UPDATE", harness.RawMessage(0x1010, 0x2800, soaQ), 0xa805},
		{"STATUS", harness.RawMessage(0x1011, 0x1000, soaQ), 0x9005},
		{"IQUERY", harness.RawMessage(0x1012, 0x0800, soaQ), 0x8805},
		{"CC with type 65284", harness.RawMessage(0x1013, 0x7400, harness.Question(zone, 0xff04, request.ClassCC)), 0xf005},
		{"CC CREATE with class IN", harness.RawMessage(0x1014, 0x7400, harness.Question(zone, request.TypeCreate, dns.ClassINET)), 0xf005},
	}
	for _, c := range cases {
		expectBytes(t, c.name+" over UDP", udp(t, a.Addr(), c.req, 3*time.Second), harness.Reply(c.req, c.wantFlags))
		expectBytes(t, c.name+" over TCP", tcp(t, a.Addr(), c.req, 3*time.Second), harness.Reply(c.req, c.wantFlags))
	}
	if n := dirEntries(t, a.Dir()); len(n) != 0 {
		t.Errorf("refused requests wrote %v", n)
	}
	a.CheckAlive(t)
}

// Passthrough under concurrency (issue 15): clients over UDP and TCP query at once through
// the agent, which shares its upstream sockets and connections among them. Every client
// gets the answer to its own question with its own id, exactly as named gives it, and
// named sees a handful of TCP connections, not one per relayed query.
func TestQueryPassthroughConcurrent(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	const records, udpClients, tcpClients, perClient = 64, 24, 8, 40
	z := harness.NewZone(zone, 2024150101, records)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	dest := harness.StartProxy(t, p.Addr()) // counts the TCP connections named sees
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: dest.Addr()})

	want := map[string]string{} // question name -> named's answer
	for i := 0; i < records; i++ {
		name := fmt.Sprintf("r%d.%s", i, zone)
		r, err := harness.Exchange("tcp", p.Addr(), new(dns.Msg).SetQuestion(name, dns.TypeA), 3*time.Second)
		if err != nil {
			t.Fatalf("direct query for %s: %v", name, err)
		}
		want[name] = msgString(r)
	}
	conns0 := dest.TCPConns()
	var wg sync.WaitGroup
	var failed atomic.Int32
	client := func(network string, c int) {
		defer wg.Done()
		for i := 0; i < perClient && failed.Load() < 5; i++ {
			name := fmt.Sprintf("r%d.%s", (c*7+i)%records, zone)
			q := new(dns.Msg).SetQuestion(name, dns.TypeA)
			q.Id = uint16(c<<8 | i)
			r, err := harness.Exchange(network, a.Addr(), q, 5*time.Second)
			switch {
			case err != nil:
				t.Errorf("%s client %d, %s: %v", network, c, name, err)
			case r.Id != q.Id:
				t.Errorf("%s client %d, %s: reply id %#x, want %#x", network, c, name, r.Id, q.Id)
			case msgString(r) != want[name]:
				t.Errorf("%s client %d asked for %s and got:\n%s\nwant:\n%s", network, c, name, msgString(r), want[name])
			default:
				continue
			}
			failed.Add(1)
		}
	}
	for c := 0; c < udpClients; c++ {
		wg.Add(1)
		go client("udp", c)
	}
	for c := 0; c < tcpClients; c++ {
		wg.Add(1)
		go client("tcp", udpClients+c)
	}
	wg.Wait()
	if n := dest.TCPConns() - conns0; n > 2*tcpClients {
		t.Errorf("%d TCP queries relayed over %d connections to named, want at most %d (reused)",
			tcpClients*perClient, n, 2*tcpClients)
	}
	a.CheckAlive(t)
}

// Issue 15: plain UDP queries take the fast path (relayed from the socket's reader without
// the middleware chain), yet are counted in requests_total like the others; when the
// destination is down, a plain query and one the chain relays (an EDNS option) are both
// answered SERVFAIL with the question echoed, at once, and counted as such.
func TestQueryPassthroughFastPathCountsAndFails(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024150201, 8)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: p.Addr()})
	metric := func(a *harness.Agent, rcode string) float64 {
		t.Helper()
		v, err := harness.MetricValue(a.Config.MetricsListen, `dnsagent_requests_total{opcode="QUERY",rcode="`+rcode+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const n = 20
	before := metric(a, "NOERROR")
	for i := 0; i < n; i++ {
		q := new(dns.Msg).SetQuestion(fmt.Sprintf("r%d.%s", i%8, zone), dns.TypeA)
		sameAnswer(t, "udp", a.Addr(), p.Addr(), q)
	}
	// A query is counted just after its reply is written: wait a moment for the last.
	counted := func(a *harness.Agent, rcode string, before float64, want int) {
		t.Helper()
		var got float64
		harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
			got = metric(a, rcode) - before
			return got >= float64(want)
		})
		if got != float64(want) {
			t.Errorf("requests_total counted %v %s queries, want %d", got, rcode, want)
		}
	}
	counted(a, "NOERROR", before, n)

	down := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)) // nothing listens there
	b := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: down})
	plain := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	withOption := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	withOption.SetEdns0(1232, false)
	withOption.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	// The harness's start-up probe was answered SERVFAIL too, and is counted just after
	// its reply is written: wait until the count holds still.
	before = -1
	harness.Eventually(3*time.Second, 100*time.Millisecond, func() bool {
		v := metric(b, "SERVFAIL")
		settled := v == before
		before = v
		return settled
	})
	for _, q := range []*dns.Msg{plain, withOption} {
		start := time.Now()
		r, err := harness.Exchange("udp", b.Addr(), q, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeServerFailure || r.Id != q.Id || len(r.Question) != 1 || r.Question[0] != q.Question[0] {
			t.Errorf("destination down: got %v, want SERVFAIL with the question echoed", r)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("destination down: SERVFAIL after %v, want at once", el)
		}
	}
	counted(b, "SERVFAIL", before, 2)
}

// An agent listening on a wildcard address (0.0.0.0; [::], asked over IPv4 and IPv6)
// answers from the address it was asked on,
// over the relay's fast path (a plain query) and through the request chain (a query with
// an EDNS option, a NOTIFY): a client that checks where its answer came from, as
// resolvers and Designate's pollers do, would drop an answer from another address.
func TestWildcardListenerAnswersFromAddressAsked(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024150301, 8)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	for _, tc := range []struct {
		listen string
		asked  []string
	}{
		{"0.0.0.0", []string{"127.0.0.3", "127.0.0.4"}},
		{"[::]", []string{"127.0.0.3", "127.0.0.4", "::1"}}, // dual stack: IPv4 peers mapped
	} {
		t.Run(tc.listen, func(t *testing.T) {
			port := harness.FreePort(t)
			harness.StartAgent(t, harness.AgentConfig{Listen: fmt.Sprintf("%s:%d", tc.listen, port),
				Masters: p.Addr(), AllowNotify: "127.0.0.0/8, ::1", QueryDestination: p.Addr()})
			client, err := net.ListenUDP("udp", &net.UDPAddr{}) // both families
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			withOption := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
			withOption.SetEdns0(1232, false)
			withOption.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
			optionQuery, err := withOption.Pack()
			if err != nil {
				t.Fatal(err)
			}
			for _, asked := range tc.asked {
				to := netip.AddrPortFrom(netip.MustParseAddr(asked), uint16(port))
				for _, req := range []struct {
					name string
					msg  []byte
				}{
					{"plain query", harness.QueryMsg(0x0601, zone, dns.TypeSOA, false)},
					{"query with an EDNS option", optionQuery},
					{"NOTIFY", harness.NotifyMsg(0x0602, "unknown.example.", false)},
				} {
					if _, err := client.WriteToUDPAddrPort(req.msg, to); err != nil {
						t.Fatal(err)
					}
					client.SetReadDeadline(time.Now().Add(3 * time.Second))
					buf := make([]byte, 65535)
					n, from, err := client.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Errorf("%s to %v: %v", req.name, to, err)
						continue
					}
					if from.Addr().Unmap() != to.Addr() || from.Port() != to.Port() {
						t.Errorf("%s to %v: answered from %v", req.name, to, from)
					}
					if n < 2 || buf[0] != req.msg[0] || buf[1] != req.msg[1] {
						t.Errorf("%s to %v: the answer's id is not the query's", req.name, to)
					}
				}
			}
		})
	}
}

package tests

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Designate agent unit-test vectors (SPEC §1).
var (
	vecNotify     = harness.Hex("1a7220000001000000000000076578616d706c6503636f6d0000060001")
	vecNotifyOK   = harness.Hex("1a72a4000001000000000000076578616d706c6503636f6d0000060001")
	vecNotifyRef  = harness.Hex("1a72a0050001000000000000076578616d706c6503636f6d0000060001")
	vecCreate     = harness.Hex("735d70000001000000000000076578616d706c6503636f6d00ff02ff00")
	vecCreateOK   = harness.Hex("735df4000001000000000000076578616d706c6503636f6d00ff02ff00")
	vecCreateRef  = harness.Hex("735df0050001000000000000076578616d706c6503636f6d00ff02ff00")
	vecDelete     = harness.Hex("735e70000001000000000000076578616d706c6503636f6d00ff03ff00")
	vecDeleteOK   = harness.Hex("735ef4000001000000000000076578616d706c6503636f6d00ff03ff00")
	vecDeleteRef  = harness.Hex("735ef0050001000000000000076578616d706c6503636f6d00ff03ff00")
	vecWorkerCC   = harness.Hex("7de2 7400 0001 0000 0000 0000 076578616d706c6503636f6d00 ff02 ff00")
	vecWorkerCCOK = harness.Hex("7de2 f400 0001 0000 0000 0000 076578616d706c6503636f6d00 ff02 ff00")
	vecNotifyRD   = harness.Hex("1a7321000001000000000000076578616d706c6503636f6d0000060001")
	vecNotifyRDOK = harness.Hex("1a73a5000001000000000000076578616d706c6503636f6d0000060001")
)

// Acceptance test 3: the Designate vectors over UDP produce exactly the listed replies,
// from an allowed source and from a refused one.
func TestAT03DesignateVectors(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 20, allowLocal: true})
	a := e.a

	steps := []struct {
		name     string
		req, rep []byte
	}{
		{"CREATE 0x7000 (Designate vector)", vecCreate, vecCreateOK},
		{"CREATE 0x7400 as the worker sends it, zone exists", vecWorkerCC, vecWorkerCCOK},
		{"NOTIFY 0x2000 (Designate vector)", vecNotify, vecNotifyOK},
		{"NOTIFY 0x2100 with RD", vecNotifyRD, vecNotifyRDOK},
		{"DELETE 0x7000", vecDelete, vecDeleteOK},
	}
	for _, s := range steps {
		expectBytes(t, s.name, udp(t, a.Addr(), s.req, 25*time.Second), s.rep)
		if s.req[3] == 0x00 && s.req[2] == 0x70 && s.req[len(s.req)-3] == 0x02 {
			// after the first CREATE the zone must be there
			if d := diffFile(a, primarySet(t, e.p)); d != "" {
				t.Errorf("after %s: %s", s.name, d)
			}
		}
	}

	// The same vectors against an agent whose allow_notify does not include 127.0.0.1.
	t.Run("refused source", func(t *testing.T) {
		b := harness.StartAgent(t, harness.AgentConfig{Masters: e.p.Addr(), AllowNotify: "127.0.0.2"})
		expectBytes(t, "NOTIFY from a refused source", udp(t, b.Addr(), vecNotify, 3*time.Second), vecNotifyRef)
		expectBytes(t, "CREATE from a refused source", udp(t, b.Addr(), vecCreate, 25*time.Second), vecCreateRef)
		expectBytes(t, "DELETE from a refused source", udp(t, b.Addr(), vecDelete, 25*time.Second), vecDeleteRef)
		if n := dirEntries(t, b.Dir()); len(n) != 0 {
			t.Errorf("refused requests wrote %v", n)
		}
		b.CheckAlive(t)
	})
	a.CheckAlive(t)
}

// Acceptance test 4: NOTIFY, CREATE and DELETE from a source outside allow_notify are
// REFUSED and change nothing; allow_notify takes lists and CIDRs.
func TestAT04RefusedSource(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 200, proxy: true, allowLocal: true})
	a, px := e.a, e.proxy
	const outsider = "127.0.0.2"

	ex := func(src string, req []byte) []byte {
		t.Helper()
		r, err := harness.ExchangeUDPFrom(src, a.Addr(), req, 25*time.Second)
		if err != nil {
			t.Fatalf("exchange from %s: %v", src, err)
		}
		return r
	}
	// The agent sees no zone and no master traffic must follow.
	conns0, udp0 := px.TCPConns(), px.UDPMessages()
	cr := harness.CreateMsg(0x0401, zone)
	expectBytes(t, "CREATE from "+outsider, ex(outsider, cr), harness.Reply(cr, 0xf005))
	nt := harness.NotifyMsg(0x0402, zone, false)
	expectBytes(t, "NOTIFY from "+outsider, ex(outsider, nt), harness.Reply(nt, 0xa005))
	// as the worker sends it (RD set): RD is echoed, as dnspython's make_response does
	ntRD := harness.NotifyMsg(0x0405, zone, true)
	expectBytes(t, "NOTIFY 0x2100 from "+outsider, ex(outsider, ntRD), harness.Reply(ntRD, 0xa105))
	// over TCP too
	r, err := harness.ExchangeTCPFrom(outsider, a.Addr(), cr, 25*time.Second)
	if err != nil {
		t.Fatalf("TCP CREATE from %s: %v", outsider, err)
	}
	expectBytes(t, "CREATE over TCP from "+outsider, r, harness.Reply(cr, 0xf005))
	quiet := stillFor(1*time.Second, func() bool {
		return len(dirEntries(t, a.Dir())) == 0 && px.TCPConns() == conns0 && px.UDPMessages() == udp0
	})
	if !quiet {
		t.Errorf("refused requests had effects: files %v, master TCP connections %d, UDP messages %d",
			dirEntries(t, a.Dir()), px.TCPConns()-conns0, px.UDPMessages()-udp0)
	}

	// From the allowed source the zone is created...
	create(t, a, 0x0403)
	path := a.ZoneFile(zone)
	want := primarySet(t, e.p)
	if d := diffFile(a, want); d != "" {
		t.Fatalf("after CREATE from 127.0.0.1: %s", d)
	}
	// ...and a refused NOTIFY for a newer version, or a refused DELETE, leaves it alone.
	z2 := e.z.Next(10, 10)
	e.p.SetZone(t, zone, z2.Text())
	conns1 := px.TCPConns()
	expectBytes(t, "NOTIFY for a newer serial from "+outsider, ex(outsider, nt), harness.Reply(nt, 0xa005))
	dl := harness.DeleteMsg(0x0404, zone)
	expectBytes(t, "DELETE from "+outsider, ex(outsider, dl), harness.Reply(dl, 0xf005))
	unchanged := stillFor(1*time.Second, func() bool {
		s, err := harness.ZoneFileSerial(path, zone)
		return err == nil && s == e.z.Serial && px.TCPConns() == conns1
	})
	if !unchanged {
		s, err := harness.ZoneFileSerial(path, zone)
		t.Errorf("after refused NOTIFY/DELETE: file serial %d (%v), want %d; master TCP connections %d",
			s, err, e.z.Serial, px.TCPConns()-conns1)
	}

	// allow_notify as a list with a CIDR: 127.0.0.2 is in, 127.0.0.1 is not.
	t.Run("list and CIDR", func(t *testing.T) {
		b := harness.StartAgent(t, harness.AgentConfig{Masters: e.p.Addr(), AllowNotify: "10.0.0.0/8, 127.0.0.2/32"})
		cr := harness.CreateMsg(0x0410, zone)
		r, err := harness.ExchangeUDPFrom("127.0.0.1", b.Addr(), cr, 25*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		expectBytes(t, "CREATE from 127.0.0.1 (not listed)", r, harness.Reply(cr, 0xf005))
		if n := dirEntries(t, b.Dir()); len(n) != 0 {
			t.Errorf("refused CREATE wrote %v", n)
		}
		r, err = harness.ExchangeUDPFrom("127.0.0.2", b.Addr(), cr, 25*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		expectBytes(t, "CREATE from 127.0.0.2 (in 127.0.0.2/32)", r, harness.Reply(cr, 0xf400))
		if d := diffFile(b, primarySet(t, e.p)); d != "" {
			t.Errorf("after the allowed CREATE: %s", d)
		}
	})
	a.CheckAlive(t)
}

// Issue 12 item 8, over the wire: the replies Designate's agent gives where ours differed.
// A failed DELETE is SERVFAIL with AA (0xf402: Designate sets AA before calling the
// backend); a reply to an EDNS request carries Designate's OPT (payload 8192, version 0,
// no flags); a request with two questions is FORMERR with its opcode, RD and questions
// echoed, over UDP and TCP.
func TestDesignateByteCompatibility(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 20, allowLocal: true,
		agent: harness.AgentConfig{Backend: map[string]string{"delete_command": "false"}}})
	a := e.a
	expectBytes(t, "CREATE", udp(t, a.Addr(), vecCreate, 25*time.Second), vecCreateOK)

	del := harness.Hex("735e74000001000000000000076578616d706c6503636f6d00ff03ff00")
	expectBytes(t, "DELETE whose delete_command fails", udp(t, a.Addr(), del, 25*time.Second),
		harness.Hex("735ef4020001000000000000076578616d706c6503636f6d00ff03ff00"))

	// NOTIFY with an OPT: payload 1232, DO set.
	notifyEDNS := harness.Hex("1a74 2000 0001 0000 0000 0001 076578616d706c6503636f6d00 0006 0001 00 0029 04d0 00008000 0000")
	expectBytes(t, "NOTIFY with EDNS", udp(t, a.Addr(), notifyEDNS, 3*time.Second),
		harness.Hex("1a74 a400 0001 0000 0000 0001 076578616d706c6503636f6d00 0006 0001 00 0029 2000 00000000 0000"))

	q := harness.Question(zone, dns.TypeSOA, dns.ClassINET)
	two := harness.RawMessage(0x0821, 0x2100, q, q)
	want := harness.RawMessage(0x0821, 0xa101, q, q)
	expectBytes(t, "NOTIFY with two questions over UDP", udp(t, a.Addr(), two, 3*time.Second), want)
	expectBytes(t, "NOTIFY with two questions over TCP", tcp(t, a.Addr(), two, 3*time.Second), want)
	a.CheckAlive(t)
}

package harness

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

// The builders must produce exactly Designate's bytes (SPEC §1).
func TestMessageBytes(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"create 0x7400", CreateMsg(0x7de2, "example.com."), "7de2 7400 0001 0000 0000 0000 076578616d706c6503636f6d00 ff02 ff00"},
		{"delete", DeleteMsg(0x7de2, "example.com"), "7de2 7400 0001 0000 0000 0000 076578616d706c6503636f6d00 ff03 ff00"},
		{"notify 0x2000", NotifyMsg(0x1a72, "example.com.", false), "1a7220000001000000000000076578616d706c6503636f6d0000060001"},
		{"notify 0x2100", NotifyMsg(0x1a72, "example.com.", true), "1a7221000001000000000000076578616d706c6503636f6d0000060001"},
		{"reply", Reply(Hex("735d70000001000000000000076578616d706c6503636f6d00ff02ff00"), 0xf400), "735df4000001000000000000076578616d706c6503636f6d00ff02ff00"},
	}
	for _, c := range cases {
		if !bytes.Equal(c.got, Hex(c.want)) {
			t.Errorf("%s: got %x, want %s", c.name, c.got, strings.ReplaceAll(c.want, " ", ""))
		}
	}
	// The same with miekg/dns, as the agent will see them.
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: 0x7de2, Opcode: request.OpcodeCC, Authoritative: true}}
	m.Question = []dns.Question{{Name: "example.com.", Qtype: request.TypeCreate, Qclass: request.ClassCC}}
	packed, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(packed, CreateMsg(0x7de2, "example.com")) {
		t.Errorf("miekg CREATE %x differs from %x", packed, CreateMsg(0x7de2, "example.com"))
	}
	n := &dns.Msg{MsgHdr: dns.MsgHdr{Id: 0x1a72, Opcode: dns.OpcodeNotify, RecursionDesired: true}}
	n.Question = []dns.Question{{Name: "example.com.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}
	packed, _ = n.Pack()
	if !bytes.Equal(packed, NotifyMsg(0x1a72, "example.com", true)) {
		t.Errorf("miekg NOTIFY %x differs", packed)
	}
}

func TestGenerateZone(t *testing.T) {
	z := NewZone("example.com", 7, 50)
	a, b := z.Text(), z.Text()
	if a != b {
		t.Fatal("not deterministic")
	}
	rrs, err := ParseZoneText(a, "example.com.")
	if err != nil {
		t.Fatal(err)
	}
	types := map[uint16]int{}
	for _, rr := range rrs {
		types[rr.Header().Rrtype]++
	}
	for _, ty := range []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX, dns.TypeCNAME} {
		if types[ty] == 0 {
			t.Errorf("no %s record", dns.TypeToString[ty])
		}
	}
	n := z.Next(5, 10)
	if s, _ := SerialOf(n.Text(), "example.com"); s != 8 {
		t.Errorf("next serial %d", s)
	}
	ra, _ := ParseZoneText(a, "example.com.")
	rb, _ := ParseZoneText(n.Text(), "example.com.")
	d := DiffSets(Canonical(ra), Canonical(rb), 3)
	if d == "" {
		t.Error("versions equal")
	}
	t.Log(d)
}

func TestPrimaryAndProxy(t *testing.T) {
	t.Parallel()
	Require(t, "named", "rndc")
	z := NewZone("example.com", 1, 1200)
	z.Extra = BigTXT("big.example.com.", 8)
	p := StartPrimaryWith(t, PrimaryOptions{Zones: map[string]string{"example.com": z.Text()}, IXFRFromDifferences: true})
	if s := p.SOASerial(t, "example.com"); s != 1 {
		t.Fatalf("serial %d", s)
	}
	rrs := p.AXFR(t, "example.com")
	want, _ := ParseZoneText(z.Text(), "example.com.")
	if d := DiffSets(Canonical(want), AXFRSet(rrs), 5); d != "" {
		t.Fatalf("AXFR differs from the zone text: %s", d)
	}
	z2 := z.Next(100, 50)
	start := time.Now()
	p.SetZone(t, "example.com", z2.Text())
	t.Logf("SetZone took %v", time.Since(start))
	want2, _ := ParseZoneText(z2.Text(), "example.com.")
	if d := DiffSets(Canonical(want2), AXFRSet(p.AXFR(t, "example.com")), 5); d != "" {
		t.Fatalf("AXFR after SetZone: %s", d)
	}
	// ixfr-from-differences: named answers an IXFR from serial 1 incrementally.
	ix := new(dns.Msg)
	ix.SetIxfr("example.com.", 1, "ns1.example.com.", "hostmaster.example.com.")
	ch, err := (&dns.Transfer{ReadTimeout: 5 * time.Second}).In(ix, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var ixrrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatal(env.Error)
		}
		ixrrs = append(ixrrs, env.RR...)
	}
	if len(ixrrs) < 3 || ixrrs[1].Header().Rrtype != dns.TypeSOA || ixrrs[1].(*dns.SOA).Serial != 1 {
		t.Fatalf("IXFR from serial 1 is not incremental: %d records, second %v", len(ixrrs), ixrrs[1])
	}
	t.Logf("IXFR 1->2: %d records", len(ixrrs))
	z3 := z2.Next(1, 1)
	p.SetZone(t, "example.com", z3.Text()) // a second reload right after the first

	// UDP truncation without EDNS.
	r, err := Exchange("udp", p.Addr(), &dns.Msg{MsgHdr: dns.MsgHdr{Id: 9}, Question: []dns.Question{{Name: "big.example.com.", Qtype: dns.TypeTXT, Qclass: dns.ClassINET}}}, time.Second)
	if err != nil || !r.Truncated {
		t.Fatalf("big TXT over UDP not truncated: %v %v", err, r)
	}

	px := StartProxy(t, p.Addr())
	if _, err := AXFR(px.Addr(), "example.com"); err != nil {
		t.Fatalf("AXFR through pass proxy: %v", err)
	}
	if s, err := QuerySerial(px.Addr(), "example.com"); err != nil || s != z3.Serial {
		t.Fatalf("SOA through proxy: %d %v", s, err)
	}
	// UDP relay
	if r, err := Exchange("udp", px.Addr(), (&dns.Msg{}).SetQuestion("example.com.", dns.TypeSOA), time.Second); err != nil || len(r.Answer) != 1 {
		t.Fatalf("UDP through proxy: %v %v", err, r)
	}
	px.SetCut(2000)
	if s, err := QuerySerial(px.Addr(), "example.com"); err != nil || s != z3.Serial {
		t.Fatalf("SOA through cut proxy: %d %v", s, err)
	}
	if _, err := AXFR(px.Addr(), "example.com"); err == nil {
		t.Fatal("AXFR through cut proxy succeeded")
	} else {
		t.Logf("cut AXFR: %v", err)
	}
	if px.Cuts() == 0 {
		t.Fatal("no cut counted")
	}
	px.SetDelay(700 * time.Millisecond)
	start = time.Now()
	if _, err := QuerySerial(px.Addr(), "example.com"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Fatalf("delay not applied: %v", el)
	}
	start = time.Now()
	if _, err := ExchangeUDP(px.Addr(), QueryMsg(1, "example.com", dns.TypeSOA, false), time.Second); err != nil || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("UDP delayed without UDP flag: %v %v", err, time.Since(start))
	}
	px.Pass()
	if _, err := AXFR(px.Addr(), "example.com"); err != nil {
		t.Fatalf("AXFR after Pass: %v", err)
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d twice", p)
		}
		seen[p] = true
		l, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("udp %d: %v", p, err)
		}
		l.Close()
	}
}

// socketDrops reads a bound socket's drops from /proc/net/udp: none while it keeps up,
// some once its receive buffer is full.
func TestSocketDrops(t *testing.T) {
	rx, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rx.(*net.UDPConn).SetReadBuffer(4096)
	addr := rx.LocalAddr().String()
	if n := socketDrops(addr); n != 0 {
		t.Fatalf("a new socket: %d drops, want 0", n)
	}
	tx, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for range 200 {
		tx.Write(make([]byte, 1000))
	}
	if n := socketDrops(addr); n <= 0 {
		t.Fatalf("200 unread datagrams into a 4 KiB buffer: %d drops, want some", n)
	}
}

// A server the harness started must not outlive a test binary that dies without running
// its clean-ups (a -timeout panic, a crash, its output pipe closed): it would keep its
// ports and CPU on the machine for the next runs. The test binary runs itself as the
// helper that starts a process the harness's way and exits at once.
func TestChildDiesWithTheTestBinary(t *testing.T) {
	if os.Getenv("DNSAGENT_HARNESS_HELPER") == "1" {
		cmd := exec.Command("sleep", "60")
		startProcess(t, cmd, NewBuffer(1024))
		fmt.Printf("child pid %d\n", cmd.Process.Pid)
		os.Exit(3) // no clean-ups, no deferred calls
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithTheTestBinary$")
	helper.Env = append(os.Environ(), "DNSAGENT_HARNESS_HELPER=1")
	out, _ := helper.Output()
	m := regexp.MustCompile(`child pid (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the helper did not start its child: %q", out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// Gone, or a zombie until whoever inherited it reaps it.
	dead := Eventually(5*time.Second, 20*time.Millisecond, func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
	if !dead {
		t.Fatalf("process %d (sleep 60) still runs after the test binary that started it died", pid)
	}
}

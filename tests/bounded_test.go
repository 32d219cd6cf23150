package tests

// Issue 14 acceptance 3: a valid 1M-record IXFR applies in bounded memory, and a hostile
// primary (endless AXFR and IXFR, empty messages) is stopped at the limits with the old zone
// kept. transfer/bounded_test.go covers the hostile modes against the client alone.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// maxIXFRRSS bounds it for the valid 1M-record IXFR (issue 14). The spooled change set
// brought it from 406 MB to 70-95 MiB, the Patcher's table sorted on disk in partitions
// to about 41 MiB (transfer's BenchmarkIXFRIntoFileBackend1M shows the heap). That still
// reached 94-117 MiB at times on a loaded machine: a GC whose worker the OS does not run
// at the end of its mark phase lets the other thread allocate freely, counts all of it
// live and doubles that for its next goal, so the peak follows the garbage rate. The
// apply allocating ~600 bytes a record then, ~30 now (TestApplySpooledChangeSetAllocatesLittle),
// the file IXFR peaks at 32-36 MiB at a load average of 10-12.
const maxIXFRRSS = 64 << 20

// streamPrimary serves generated versions of zone over TCP without holding them: version
// v has n records; an IXFR from v-1 deletes all of them and adds all of v's. Its mode
// makes it hostile instead.
type streamPrimary struct {
	ln     net.Listener
	serial atomic.Uint32
	n      atomic.Int64
	mode   atomic.Value // string
	// withNS adds an apex NS record to every version (named loads no zone without one).
	withNS atomic.Bool
}

const (
	streamGood        = "good"
	streamEndlessAXFR = "endless-axfr" // AXFR: records forever; IXFR: the whole zone, forever
	streamEndlessIXFR = "endless-ixfr" // IXFR: one difference sequence adding forever; AXFR refused
	streamEmpty       = "empty"        // the SOA, then empty messages forever
)

func startStreamPrimary(t *testing.T, serial uint32, n int) *streamPrimary {
	t.Helper()
	p := &streamPrimary{}
	p.serial.Store(serial)
	p.n.Store(int64(n))
	p.mode.Store(streamGood)
	p.ln = serveTCP(t, p.serve)
	return p
}

func (p *streamPrimary) Addr() string { return p.ln.Addr().String() }

func streamSOA(serial uint32) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns: "ns1.example.net.", Mbox: "hostmaster.example.net.", Serial: serial, Refresh: 3600, Retry: 3600, Expire: 86400, Minttl: 300}
}

func streamRecord(version uint32, i int) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: fmt.Sprintf("h%d.%s", i, zone), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A: net.IPv4(byte(version), byte(i>>16), byte(i>>8), byte(i))}
}

// fatRecord is what the endless modes send: a TXT record of 240 bytes of text, so that the
// records a test lets through would cost more than 64 MiB if the agent held them.
func fatRecord(version uint32, i int) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Name: fmt.Sprintf("h%d.%s", i, zone), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
		Txt: []string{fmt.Sprintf("%d %0240d", version, i)}}
}

func (p *streamPrimary) serve(c net.Conn) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return
	}
	raw := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, raw); err != nil {
		return
	}
	q := new(dns.Msg)
	if q.Unpack(raw) != nil || len(q.Question) != 1 {
		return
	}
	var batch []dns.RR
	send := func(rrs ...dns.RR) bool {
		m := new(dns.Msg).SetReply(q)
		m.Authoritative = true
		m.Answer = rrs
		m.Compress = true
		b, err := m.Pack()
		if err != nil {
			return false
		}
		_, err = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
		return err == nil
	}
	// add queues a record, sending 200 to a message.
	add := func(rr dns.RR) bool {
		batch = append(batch, rr)
		if len(batch) < 200 {
			return true
		}
		ok := send(batch...)
		batch = batch[:0]
		return ok
	}
	flush := func() bool { return len(batch) == 0 || send(batch...) }
	serial, n, mode := p.serial.Load(), int(p.n.Load()), p.mode.Load().(string)
	cur := streamSOA(serial)
	qt := q.Question[0].Qtype
	switch {
	case qt == dns.TypeSOA:
		send(cur)
	case mode == streamEmpty:
		send(cur)
		for send() {
			time.Sleep(10 * time.Millisecond)
		}
	case mode == streamEndlessAXFR:
		add(cur)
		for i := 0; add(fatRecord(serial, i)); i++ {
		}
	case mode == streamEndlessIXFR && qt == dns.TypeAXFR:
		if b, err := new(dns.Msg).SetRcode(q, dns.RcodeRefused).Pack(); err == nil {
			c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
		}
	case mode == streamEndlessIXFR:
		from := q.Ns[0].(*dns.SOA).Serial
		add(cur)
		add(streamSOA(from))
		add(cur)
		for i := 0; add(fatRecord(serial, i)); i++ {
		}
	case qt == dns.TypeIXFR && q.Ns[0].(*dns.SOA).Serial == serial-1:
		add(cur)
		add(streamSOA(serial - 1))
		for i := range n {
			add(streamRecord(serial-1, i))
		}
		add(cur)
		for i := range n {
			add(streamRecord(serial, i))
		}
		add(cur)
		flush()
	default: // AXFR, or IXFR answered with the whole zone
		add(cur)
		if p.withNS.Load() {
			add(&dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: "ns1.example.net."})
		}
		for i := range n {
			add(streamRecord(serial, i))
		}
		add(cur)
		flush()
	}
}

// resetPeak resets the agent's VmHWM (clear_refs 5), so the next reading is this case's.
func resetPeak(t *testing.T, pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Logf("cannot reset the peak RSS: %v", err)
	}
}

// A valid IXFR of 1M records (500,000 deleted, 500,000 added) applies with the agent's
// peak RSS under 64 MiB: the change set spills to disk.
func TestBoundedMillionRecordIXFR(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("1M-record IXFR")
	}
	const n = 500_000
	p := startStreamPrimary(t, 1, n)
	a := millionIXFR(t, p, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"}, n)
	rrs, err := harness.ParseZoneFile(a.ZoneFile(zone), bogusOrigin)
	if err != nil || len(rrs) != n+1 || rrs[0].(*dns.SOA).Serial != 2 {
		t.Fatalf("zone file after the IXFR: %d records (%v), want %d at serial 2", len(rrs), err, n+1)
	}
	for _, rr := range rrs[1:] {
		if a, ok := rr.(*dns.A); !ok || a.A.To4()[0] != 2 {
			t.Fatalf("record of the old version left: %s", rr)
		}
	}
}

// The same 1M-record IXFR into powerdns (MariaDB): 2-4 minutes on 2 cores (the
// CREATE and the IXFR write 1.5M rows), so only with DNSAGENT_LONG_TESTS=1. The rows are
// read back from the spooled change set batch_size at a time: 37 MiB peak RSS, 655 MiB
// when Apply built every row first.
func TestBoundedMillionRecordIXFRPowerDNS(t *testing.T) {
	t.Parallel()
	longTest(t)
	harness.Require(t, "mariadbd", "mariadb-install-db")
	const n = 500_000
	m := harness.StartMariaDB(t)
	dbname := m.NewPDNSDatabase(t)
	p := startStreamPrimary(t, 1, n)
	millionIXFR(t, p, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", BackendDriver: "powerdns",
		Backend:       map[string]string{"zone_file_path": "-", "dsn": m.DSN(dbname), "pdns_control_enabled": "false"},
		CreateTimeout: "600"}, n)
	db := m.DB(t, dbname)
	var total, old int
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(content NOT LIKE '2.%'), 0) FROM records WHERE type = 'A'`).Scan(&total, &old); err != nil {
		t.Fatal(err)
	}
	var soa string
	db.QueryRow(`SELECT content FROM records WHERE type = 'SOA'`).Scan(&soa) //nolint:errcheck // checked below
	if total != n || old != 0 || !strings.Contains(soa, " 2 ") {
		t.Errorf("MariaDB after the IXFR: %d A rows, %d of the old version, SOA %q; want %d, 0, serial 2", total, old, soa, n)
	}
}

// The same 1M-record IXFR into bind9, in update mode (too big for one UPDATE: the zone
// file is patched, frozen and thawed) and in reload mode; named then serves the new
// version. 10-30 s each and two named loading 500,000 records (36 MiB; 85 MiB was seen
// once under load when the apply still allocated ~600 bytes a record, see maxIXFRRSS):
// only with DNSAGENT_LONG_TESTS=1.
func TestBoundedMillionRecordIXFRBind9(t *testing.T) {
	t.Parallel()
	longTest(t)
	harness.Require(t, "named", "rndc")
	const n = 500_000
	for _, mode := range []string{"update", "reload"} {
		t.Run(mode, func(t *testing.T) {
			p := startStreamPrimary(t, 1, n)
			p.withNS.Store(true)
			bn := harness.StartBackendNamed(t, harness.BackendOptions{})
			cfg := bind9AgentConfigTo(p.Addr(), bn, mode)
			cfg.CreateTimeout = "600"
			cfg.Backend["rndc_timeout"] = "120" // named loads 500,000 records before rndc returns
			millionIXFR(t, p, cfg, n)
			if s, err := bn.Serial(zone); err != nil || s != 2 {
				t.Errorf("named serves serial %d (%v), want 2", s, err)
			}
			r := bn.Query(t, "h258."+zone, dns.TypeA)
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "2.0.1.2" {
				t.Errorf("named answers h258 A with %v, want 2.0.1.2 only", r.Answer)
			}
		})
	}
}

func longTest(t *testing.T) {
	if testing.Short() || os.Getenv("DNSAGENT_LONG_TESTS") == "" {
		t.Skip("a 1M-record IXFR into a backend server (DNSAGENT_LONG_TESTS=1 runs it)")
	}
}

// millionIXFR creates zone (n records) through an agent started with cfg, then has p serve
// version 2, which replaces every record, and fails unless the agent applies it by IXFR
// with its peak RSS within maxIXFRRSS.
func millionIXFR(t *testing.T, p *streamPrimary, cfg harness.AgentConfig, n int) *harness.Agent {
	t.Helper()
	a := harness.StartAgent(t, cfg)
	start := time.Now()
	wait, err := strconv.Atoi(a.Config.CreateTimeout)
	if err != nil {
		t.Fatal(err)
	}
	req := harness.CreateMsg(0x1601, zone)
	expectBytes(t, "CREATE", udp(t, a.Addr(), req, time.Duration(wait+5)*time.Second), harness.Reply(req, 0xf400))
	t.Logf("CREATE of %d records in %v", n, time.Since(start).Round(time.Millisecond))
	_, hwm, _ := harness.ProcMemory(a.PID())
	t.Logf("peak RSS after the %d-record AXFR: %.1f MiB", n, float64(hwm)/(1<<20))

	p.serial.Store(2)
	resetPeak(t, a.PID())
	mark := len(a.Output())
	start = time.Now()
	notify(t, a, 0x1602)
	if !harness.Eventually(300*time.Second, 100*time.Millisecond, func() bool {
		return strings.Contains(since(a.Output(), mark), `"serial_to": 2`)
	}) {
		t.Fatalf("no transfer to serial 2 within 300 s:\n%s", since(a.Output(), mark))
	}
	took := time.Since(start)
	log := since(a.Output(), mark)
	if !strings.Contains(log, `"type": "IXFR",`) || !strings.Contains(log, `"result": "applied"`) || !strings.Contains(log, fmt.Sprintf(`"added": %d`, n)) {
		t.Errorf("want an applied IXFR adding %d records:\n%s", n, log)
	}
	_, hwm, _ = harness.ProcMemory(a.PID())
	t.Logf("IXFR of %d records applied in %v; agent peak RSS %.1f MiB", 2*n, took.Round(time.Millisecond), float64(hwm)/(1<<20))
	if hwm > maxIXFRRSS && !harness.AgentRaced() {
		t.Errorf("peak RSS %.1f MiB during the 1M-record IXFR, want ≤ %d MiB", float64(hwm)/(1<<20), maxIXFRRSS>>20)
	}
	return a
}

// Issue 14 acceptance 3: a hostile primary sends an endless AXFR, an endless IXFR (one
// difference sequence adding forever, AXFR refused) or, after the SOA, empty messages
// forever. Each transfer ends at its limit with the limit named in the log and in
// /zones/NAME; the agent's peak RSS stays under 64 MiB; the zone file is the old one, byte
// for byte; no temp file is left and no unlinked spool is held open. The limits are lowered
// to keep the test short (the defaults are finite too: TestReadConfigDefaultsAndIPv6Masters),
// but max_zone_records stays high enough that the endless modes' records held in memory
// would pass 64 MiB.
func TestBoundedHostilePrimary(t *testing.T) {
	t.Parallel()
	cases := []struct{ mode, want string }{
		{streamEndlessAXFR, "more than max_zone_records (200000) records"},
		{streamEndlessIXFR, "more than max_zone_records (200000) records"},
		{streamEmpty, "no record for transfer_stall_timeout (1s), "},
	}
	for i, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			p := startStreamPrimary(t, 1, 1000)
			spool := t.TempDir()
			a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1",
				Service: map[string]string{"log_format": "json", "max_zone_records": "200000", "transfer_stall_timeout": "1",
					"retry_min": "60", "transfer_spool_dir": spool}})
			create(t, a, uint16(0x1410+2*i))
			old, err := os.ReadFile(a.ZoneFile(zone))
			if err != nil {
				t.Fatal(err)
			}
			p.mode.Store(c.mode)
			p.serial.Store(2)
			resetPeak(t, a.PID())
			start := time.Now()
			notify(t, a, uint16(0x1411+2*i))
			var failed xfrLogLine
			if !harness.Eventually(25*time.Second, 50*time.Millisecond, func() bool {
				for _, l := range xfrLog(a, "transfer") {
					if l.Zone == zone && l.Result != "applied" {
						failed = l
						return true
					}
				}
				return false
			}) {
				t.Fatalf("no failed transfer within 25 s:\n%s", a.Output())
			}
			_, hwm, _ := harness.ProcMemory(a.PID())
			t.Logf("ended after %v: %s (fallback: %s); agent peak RSS %.1f MiB",
				time.Since(start).Round(time.Millisecond), failed.Result, failed.Fallback, float64(hwm)/(1<<20))
			if !strings.Contains(failed.Result+failed.Fallback, c.want) {
				t.Errorf("transfer log line: result %q, fallback %q; want %q in one", failed.Result, failed.Fallback, c.want)
			}
			if st, _ := xfrZoneStatus(t, a, zone); !strings.Contains(st.String(), c.want) || st.AppliedSerial == nil || *st.AppliedSerial != 1 {
				t.Errorf("/zones/%s = %s, want %q and the zone still at serial 1", zone, st, c.want)
			}
			if hwm > 64<<20 && !harness.AgentRaced() {
				t.Errorf("agent peak RSS %.1f MiB, want ≤ 64 MiB", float64(hwm)/(1<<20))
			}
			if now, err := os.ReadFile(a.ZoneFile(zone)); err != nil || !bytes.Equal(now, old) {
				t.Errorf("zone file changed (%v)", err)
			}
			if ents, _ := os.ReadDir(a.Dir()); len(ents) != 1 {
				t.Errorf("zone directory holds %v, want the zone file alone", ents)
			}
			if ents, _ := os.ReadDir(spool); len(ents) != 0 {
				t.Errorf("spool directory holds %v", ents)
			}
			if held := deletedFilesOpen(t, a.PID()); len(held) > 0 {
				t.Errorf("the agent holds deleted files open: %v", held)
			}
		})
	}
}

// deletedFilesOpen lists the unlinked files process pid holds open: space not released.
func deletedFilesOpen(t *testing.T, pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing the agent's open files: %v", err)
	}
	var held []string
	for _, fd := range fds {
		if target, _ := os.Readlink(dir + "/" + fd.Name()); strings.HasSuffix(target, " (deleted)") {
			held = append(held, target)
		}
	}
	return held
}

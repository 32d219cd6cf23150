package tests

// Fault injection, end to end (tracker issue 7, acceptance 4): the primary killed in the
// middle of a transfer, a primary answering garbage or another zone, a backend failing
// (reload command, rndc), and the agent itself killed with SIGKILL while it applies a
// zone. Each scenario ends with the backend holding a complete zone that converges to the
// primary once the fault is gone, without a NOTIFY and without an operator.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

// namedPID finds the process of a harness named from its pid file, or from /proc when
// the file is not there.
func namedPID(t *testing.T, dir string) int {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dir, "named.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return pid
		}
	}
	conf := filepath.Join(dir, "named.conf")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(conf)) && bytes.Contains(b, []byte("named")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	t.Fatalf("no named process for %s", conf)
	return 0
}

// restartNamed starts named again on the configuration a harness Primary wrote (same
// ports, zone files and keys) after the test killed it, and waits until it serves zone.
// It is stopped in t.Cleanup.
func restartNamed(t *testing.T, p *harness.Primary) {
	t.Helper()
	out := harness.NewBuffer(256 << 10)
	cmd := exec.Command(harness.LookPath("named"), "-g", "-n", "2", "-c", filepath.Join(p.Dir(), "named.conf"))
	cmd.Dir = p.Dir()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = harness.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart named: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			within(t, done, 30*time.Second, "restarted named exiting after SIGKILL")
		}
		if t.Failed() {
			t.Logf("restarted named output:\n%s", out)
		}
	})
	if !harness.Eventually(15*time.Second, 50*time.Millisecond, func() bool {
		_, err := harness.QuerySerial(p.Addr(), zone)
		return err == nil
	}) {
		t.Fatalf("named did not come back on %s; output:\n%s", p.Addr(), out)
	}
}

// since returns what was logged after mark.
func since(out string, mark int) string {
	if mark > len(out) {
		return ""
	}
	return out[mark:]
}

// Acceptance 4: the primary is killed (SIGKILL) while the agent transfers a large new
// version from it. The zone file stays the old complete version, byte for byte; once
// named is back the agent converges on its own (retries, no NOTIFY).
func TestFaultsAT4PrimaryKilledMidTransfer(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 60000, allowLocal: true, agent: harness.AgentConfig{
		Service: map[string]string{"retry_min": "0.2", "transfer_stall_timeout": "5"},
	}})
	a, p := e.a, e.p
	path := a.ZoneFile(zone)
	start := time.Now()
	create(t, a, 0x4101)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("CREATE of %d records took %v", e.z.Count, time.Since(start))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	z2 := e.z.Next(30000, 30000)
	p.SetZone(t, zone, z2.Text())
	pid := namedPID(t, p.Dir())
	mark, agentMark := len(p.Output()), len(a.Output())
	notify(t, a, 0x4102)
	if !harness.Eventually(10*time.Second, time.Millisecond, func() bool {
		return strings.Contains(since(p.Output(), mark), "XFR started")
	}) {
		t.Fatalf("no transfer started within 10 s of the NOTIFY; named:\n%s", since(p.Output(), mark))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill named: %v", err)
	}
	killed := time.Now()
	if strings.Contains(since(p.Output(), mark), "XFR ended") {
		t.Fatalf("test setup: named finished the transfer before it was killed; use a bigger zone:\n%s", since(p.Output(), mark))
	}
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		return strings.Contains(since(a.Output(), agentMark), "zone check failed")
	}) {
		t.Fatalf("the agent did not report the failed transfer:\n%s", since(a.Output(), agentMark))
	}
	// While named is down the agent keeps retrying; the file never changes.
	intact := stillFor(time.Second, func() bool {
		now, err := os.ReadFile(path)
		return err == nil && bytes.Equal(now, before)
	})
	if !intact {
		t.Errorf("the zone file changed after the primary died mid-transfer")
	}
	if n := dirEntries(t, a.Dir()); len(n) != 1 {
		t.Errorf("zone_file_path holds %v, want only the zone file", n)
	}

	down := time.Now()
	restartNamed(t, p)
	want := primarySet(t, p)
	took, d := waitFile(a, want, 30*time.Second)
	if d != "" {
		t.Fatalf("the zone did not converge after named came back (no NOTIFY sent): %s\nagent:\n%s", d, since(a.Output(), agentMark))
	}
	t.Logf("named killed during the transfer, down for %v; the zone converged %v after named came back, without a NOTIFY",
		down.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond))
	if n := dirEntries(t, a.Dir()); len(n) != 1 {
		t.Errorf("zone_file_path holds %v, want only the zone file", n)
	}
	a.CheckAlive(t)
}

// scriptedPrimary is a TCP-only primary whose answers a test scripts: the zone as it
// should be, or one of the faults a real named cannot be asked to make.
type scriptedPrimary struct {
	ln   net.Listener
	mode atomic.Value // string
	mu   sync.Mutex
	z    harness.Zone
	rrs  []dns.RR
	xfrs map[string]int // transfer requests served, by mode
}

// Modes of a scriptedPrimary. SOA queries are answered properly in every mode but
// "soa-garbage", so the agent always sees a newer serial and tries to transfer.
const (
	scriptGood          = "good"            // the zone, as named would send it
	scriptGarbage       = "garbage"         // length-prefixed random bytes, then close
	scriptWrongZone     = "wrong-zone"      // another zone's SOA and records
	scriptForeignRecord = "foreign-record"  // the zone with one record of another zone
	scriptBadClosing    = "bad-closing"     // the closing SOA has another serial
	scriptNoClosing     = "no-closing"      // the stream ends cleanly before the closing SOA
	scriptWrongID       = "wrong-id"        // the second message answers another query
	scriptSOAGarbage    = "soa-garbage"     // even the SOA answer is garbage
	scriptHugeLength    = "length-too-long" // a length prefix promising more than is sent
	scriptStall         = "stall"           // the first message, then nothing (transfer_stall_timeout)
)

func startScriptedPrimary(t *testing.T, z harness.Zone) *scriptedPrimary {
	t.Helper()
	s := &scriptedPrimary{xfrs: map[string]int{}}
	s.mode.Store(scriptGood)
	s.setZone(t, z)
	s.ln = serveTCP(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s.serve(c)
	})
	return s
}

// serveTCP accepts connections on a new loopback port and serves each in a goroutine of
// its own until the test ends; the cleanup closes the listener and waits for them.
func serveTCP(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		// Closing the connections too ends a serve blocked reading or writing, whatever
		// the agent on the other end does.
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

func (s *scriptedPrimary) Addr() string { return s.ln.Addr().String() }

func (s *scriptedPrimary) setZone(t *testing.T, z harness.Zone) {
	t.Helper()
	rrs, err := harness.ParseZoneText(z.Text(), zone)
	if err != nil {
		t.Fatal(err)
	}
	// A short SOA retry bounds the agent's backoff, so the test sees it converge by itself.
	rrs[0].(*dns.SOA).Retry = 2
	s.mu.Lock()
	s.z, s.rrs = z, rrs
	s.mu.Unlock()
}

// zoneSet is what the scripted primary serves now, canonical.
func (s *scriptedPrimary) zoneSet() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return harness.Canonical(s.rrs)
}

func (s *scriptedPrimary) served(mode string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xfrs[mode]
}

func (s *scriptedPrimary) serve(c net.Conn) {
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
	mode := s.mode.Load().(string)
	s.mu.Lock()
	rrs := s.rrs
	if qt := q.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		s.xfrs[mode]++
	}
	s.mu.Unlock()
	soa := rrs[0]
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	garbage := func() {
		for range 3 {
			b := make([]byte, 20+rng.Intn(200))
			rng.Read(b)
			writeFramed(c, b)
		}
	}
	reply := func(answer ...dns.RR) {
		m := new(dns.Msg).SetReply(q)
		m.Authoritative = true
		m.Answer = answer
		b, err := m.Pack()
		if err == nil {
			writeFramed(c, b)
		}
	}
	if q.Question[0].Qtype == dns.TypeSOA {
		if mode == scriptSOAGarbage {
			garbage()
			return
		}
		reply(soa)
		return
	}
	if q.Question[0].Qtype != dns.TypeAXFR && q.Question[0].Qtype != dns.TypeIXFR {
		m := new(dns.Msg).SetRcode(q, dns.RcodeRefused)
		b, _ := m.Pack()
		writeFramed(c, b)
		return
	}
	body := rrs[1:]
	switch mode {
	case scriptGarbage, scriptSOAGarbage:
		reply(soa, body[0])
		garbage()
		return
	case scriptWrongZone:
		other, _ := harness.ParseZoneText(harness.GenerateZone("example.org.", s.z.Serial, 20), "example.org.")
		for _, m := range chunks(append(other, other[0]), 50) {
			reply(m...)
		}
		return
	case scriptForeignRecord:
		foreign, _ := dns.NewRR("www.example.org. 300 IN A 192.0.2.99")
		body = append(append(append([]dns.RR(nil), body[:len(body)/2]...), foreign), body[len(body)/2:]...)
	case scriptBadClosing:
		closing := dns.Copy(soa).(*dns.SOA)
		closing.Serial++
		for _, m := range chunks(append(append([]dns.RR{soa}, body...), closing), 50) {
			reply(m...)
		}
		return
	case scriptNoClosing:
		for _, m := range chunks(append([]dns.RR{soa}, body...), 50) {
			reply(m...)
		}
		return
	case scriptWrongID:
		parts := chunks(append(append([]dns.RR{soa}, body...), soa), 50)
		reply(parts[0]...)
		q.Id++
		for _, m := range parts[1:] {
			reply(m...)
		}
		return
	case scriptHugeLength:
		reply(soa, body[0])
		c.Write([]byte{0xff, 0xf0, 0x12, 0x34})
		return
	case scriptStall:
		reply(soa, body[0])
		time.Sleep(4 * time.Second) // the agent's stall timeout is 2 s
		return
	}
	for _, m := range chunks(append(append([]dns.RR{soa}, body...), soa), 50) {
		reply(m...)
	}
}

func writeFramed(c net.Conn, b []byte) {
	c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
}

func chunks(rrs []dns.RR, n int) [][]dns.RR {
	var out [][]dns.RR
	for len(rrs) > n {
		out = append(out, rrs[:n])
		rrs = rrs[n:]
	}
	return append(out, rrs)
}

// Acceptance 4: a primary that answers garbage, another zone, a record outside the zone,
// a stream that ends early or with the wrong closing SOA, an answer to another query, or
// garbage even to SOA queries. Each is refused: the file stays the old version byte for
// byte, nothing is left behind, the agent keeps serving; once the primary answers
// properly again the zone converges by itself.
func TestFaultsAT4PrimaryAnswersGarbageOrWrongZone(t *testing.T) {
	t.Parallel()
	z1 := harness.NewZone(zone, 2024090901, 300)
	sp := startScriptedPrimary(t, z1)
	a := harness.StartAgent(t, harness.AgentConfig{Masters: sp.Addr(), AllowNotify: "127.0.0.1",
		Service: map[string]string{"retry_min": "0.2", "transfer_stall_timeout": "2"}})
	path := a.ZoneFile(zone)
	create(t, a, 0x4201)
	if t.Failed() {
		t.FailNow()
	}
	if d := diffFile(a, sp.zoneSet()); d != "" {
		t.Fatalf("CREATE from the scripted primary: %s", d)
	}
	before, _ := os.ReadFile(path)

	z2 := z1.Next(100, 150)
	sp.setZone(t, z2) // a newer serial: the agent wants it in every mode
	for i, mode := range []string{scriptGarbage, scriptWrongZone, scriptForeignRecord, scriptBadClosing,
		scriptNoClosing, scriptWrongID, scriptHugeLength, scriptStall, scriptSOAGarbage} {
		t.Run(mode, func(t *testing.T) {
			sp.mode.Store(mode)
			mark := len(a.Output())
			// A NOTIFY (the zone exists, so it is acknowledged) makes the agent check now.
			notify(t, a, 0x4210+uint16(i))
			if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
				failed := strings.Contains(since(a.Output(), mark), "zone check failed")
				return failed && (mode == scriptSOAGarbage || sp.served(mode) > 0)
			}) {
				t.Fatalf("the agent did not try and fail against %q within 10 s (transfers served %d):\n%s", mode, sp.served(mode), since(a.Output(), mark))
			}
			if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, before) {
				t.Errorf("mode %s: the zone file changed (%v)", mode, err)
			}
			if n := dirEntries(t, a.Dir()); len(n) != 1 {
				t.Errorf("mode %s: zone_file_path holds %v", mode, n)
			}
			notify(t, a, 0x4230+uint16(i)) // still answering
		})
	}
	sp.mode.Store(scriptGood)
	took, d := waitFile(a, sp.zoneSet(), 20*time.Second)
	if d != "" {
		t.Fatalf("after the primary answers properly again the zone did not converge (no NOTIFY sent): %s", d)
	}
	t.Logf("converged %v after the primary was fixed, without a NOTIFY; transfers refused: %v", took.Round(time.Millisecond), sp.xfrs)
	a.CheckAlive(t)
}

// Acceptance 4 (file backend): a reload_command that fails makes CREATE answer SERVFAIL
// and leaves no file; the log carries the command's own message. Once the server is back
// (the command succeeds), the CREATE Designate's worker retries succeeds. A reload that
// fails after a change keeps the new file and is run again by the zone's retries until the
// server has it, without another NOTIFY.
func TestFaultsAT4ReloadCommandFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	up, ran := filepath.Join(dir, "server-is-up"), filepath.Join(dir, "reloads")
	script := filepath.Join(dir, "reload.sh")
	body := "#!/bin/sh\n[ -e " + up + " ] && echo \"$1\" >> " + ran + " && exit 0\necho \"knotc: cannot reload $1: connection refused\" >&2\nexit 3\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	e := setup(t, envOpts{records: 200, allowLocal: true, agent: harness.AgentConfig{
		Backend: map[string]string{"reload_command": script + " {zone}"},
		Service: map[string]string{"retry_min": "0.5"},
	}})
	a := e.a
	mark := len(a.Output())
	req := harness.CreateMsg(0x4301, zone)
	expectBytes(t, "CREATE while the reload command fails", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf002))
	if n := dirEntries(t, a.Dir()); len(n) != 0 {
		t.Errorf("after the failed CREATE zone_file_path holds %v, want nothing", n)
	}
	if !agentLogged(a, mark, "knotc: cannot reload example.com: connection refused") {
		t.Errorf("the log does not carry the command's message:\n%s", since(a.Output(), mark))
	}
	// The NOTIFY Designate sends after a CREATE: the zone is not there.
	nt := harness.NotifyMsg(0x4302, zone, true)
	expectBytes(t, "NOTIFY after the failed CREATE", udp(t, a.Addr(), nt, 3*time.Second), harness.Reply(nt, 0xa105))

	if err := os.WriteFile(up, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	create(t, a, 0x4303)
	if d := diffFile(a, primarySet(t, e.p)); d != "" {
		t.Errorf("after the retried CREATE: %s", d)
	}

	// The server goes away again; a change arrives, its file is written, its reload fails.
	os.Remove(up)
	mark = len(a.Output())
	e.p.SetZone(t, zone, e.z.Next(2, 2).Text())
	notify(t, a, 0x4304)
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		return agentLogged(a, mark, "new zone file kept; the reload is run again")
	}) {
		t.Fatalf("no failed reload after the change:\n%s", since(a.Output(), mark))
	}
	reloads := func() int { b, _ := os.ReadFile(ran); return strings.Count(string(b), "\n") }
	before := reloads()
	if err := os.WriteFile(up, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(15*time.Second, 50*time.Millisecond, func() bool { return reloads() > before }) {
		t.Fatalf("the failed reload was not run again once the server was back (no NOTIFY sent):\n%s", since(a.Output(), mark))
	}
	if n := dirEntries(t, a.Dir()); len(n) != 1 {
		t.Errorf("zone_file_path holds %v, want the zone file alone", n)
	}
	a.CheckAlive(t)
}

// Acceptance 4 (bind9 backend): with a wrong rndc key, CREATE answers SERVFAIL, named
// does not serve the zone, no zone file is left, and the log carries rndc's own message.
// Once the key file holds the right key, the retried CREATE succeeds.
func TestFaultsAT4Bind9WrongRndcKey(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024091101, 100)
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: map[string]string{zone: z.Text()}})
	n := harness.StartBackendNamed(t, harness.BackendOptions{})
	good, err := os.ReadFile(n.RNDCKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "rndc.key")
	wrong := fmt.Sprintf("key \"rndc-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", strangerKey.secret)
	if err := os.WriteFile(keyFile, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := bind9AgentConfig(p, n, "reload")
	cfg.Backend["rndc_key_file"] = keyFile
	a := harness.StartAgent(t, cfg)

	// What rndc itself says with that key, to find in the agent's log.
	out, _ := harness.RunTool(30*time.Second, harness.LookPath("rndc"), "-k", keyFile, "-s", "127.0.0.1", "-p", strconv.Itoa(n.ControlPort()), "status")
	rndcSays := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if rndcSays == "" {
		t.Fatalf("test setup: rndc with the wrong key printed nothing")
	}
	mark := len(a.Output())
	req := harness.CreateMsg(0x4401, zone)
	expectBytes(t, "CREATE with a wrong rndc key", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf002))
	// The agent speaks the control channel itself (rndc_channel), so it says what rndc
	// says in its own words: the connection was closed, and why that may be.
	if !agentLogged(a, mark, rndcSays) && !agentLogged(a, mark, "a wrong key (rndc_key_file)") {
		t.Errorf("the log does not say the key is wrong (rndc says %q):\n%s", rndcSays, since(a.Output(), mark))
	}
	if s, err := n.Serial(zone); err == nil {
		t.Errorf("named serves the zone (serial %d) after the failed CREATE", s)
	}
	for _, f := range dirEntries(t, n.ZoneDir()) {
		if strings.Contains(f, "example.com") {
			t.Errorf("after the failed CREATE %s is left in the zone directory", f)
		}
	}

	if err := os.WriteFile(keyFile, good, 0o600); err != nil {
		t.Fatal(err)
	}
	create(t, a, 0x4402)
	got, err := n.AXFRSet(zone)
	if err != nil {
		t.Fatalf("named after the retried CREATE: %v", err)
	}
	if d := harness.DiffSets(primarySet(t, p), got, 8); d != "" {
		t.Errorf("named after the retried CREATE: %s", d)
	}
	a.CheckAlive(t)
}

// zoneFileIsComplete reports whether the zone file parses and holds exactly one of the
// given versions; it names the version.
func zoneFileIsComplete(path string, versions map[string][]string) (string, string) {
	got, err := harness.ZoneFileSet(path, bogusOrigin)
	if err != nil {
		return "", err.Error()
	}
	var diffs []string
	for name, want := range versions {
		d := harness.DiffSets(want, got, 3)
		if d == "" {
			return name, ""
		}
		diffs = append(diffs, name+": "+d)
	}
	return "", strings.Join(diffs, "\n")
}

// Acceptance 4: the agent is killed with SIGKILL while it writes a large new version.
// The zone file is then a complete version, the old or the new one, and after a restart
// the zone converges to the primary without a NOTIFY (the start-up check). Repeated with
// the kill at different moments of the write.
func TestFaultsAT4AgentKilledMidApply(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 40000, allowLocal: true, agent: harness.AgentConfig{
		Service: map[string]string{"startup_check_spread": "0.5", "retry_min": "0.2"},
	}})
	a, p := e.a, e.p
	create(t, a, 0x4501)
	if t.Failed() {
		t.FailNow()
	}
	cfg := a.Config
	file := a.ZoneFile(zone)
	temps := func() []string {
		tmps, _ := filepath.Glob(filepath.Join(cfg.ZoneFilePath, ".*~*"))
		return tmps
	}
	z := e.z
	for round, delay := range []time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond, 600 * time.Millisecond} {
		// The agent running now has converged and ended its start-up check (or it is the
		// first one, which had no zone at start-up): nothing but the NOTIFY starts a transfer.
		left := len(temps())
		old := primarySet(t, p)
		z = z.Next(20000, 20000)
		p.SetZone(t, zone, z.Text())
		next := primarySet(t, p)
		mark := len(p.Output())
		notify(t, a, 0x4510+uint16(round))
		// Kill once the agent writes the new version (a new temp file exists), plus delay.
		writing := harness.Eventually(10*time.Second, time.Millisecond, func() bool { return len(temps()) > left })
		time.Sleep(delay)
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !harness.Eventually(5*time.Second, 5*time.Millisecond, a.Exited) {
			t.Fatalf("round %d: the agent survived SIGKILL", round)
		}
		if !writing {
			t.Fatalf("round %d: no temp file appeared within 10 s of the NOTIFY; named:\n%s", round, since(p.Output(), mark))
		}
		version, d := zoneFileIsComplete(file, map[string][]string{"old": old, "new": next})
		if d != "" {
			t.Fatalf("round %d (killed %v after the write began): the zone file is not a complete version:\n%s", round, delay, d)
		}
		t.Logf("round %d: killed %v after the write began: the file holds the %s version; %d temp file(s) in the directory",
			round, delay, version, len(temps()))

		// Restart: the start-up check brings the new version, no NOTIFY.
		restarted := time.Now()
		a = harness.StartAgent(t, cfg)
		var last string
		// Generous: a loaded CI run took 23 s to converge (a start-up check, then a 40,000-record
		// transfer and write), usually it takes 2.
		if !harness.Eventually(60*time.Second, 20*time.Millisecond, func() bool {
			_, last = zoneFileIsComplete(file, map[string][]string{"new": next})
			return last == ""
		}) {
			t.Fatalf("round %d: 60 s after the restart the zone has not converged without a NOTIFY: %s", round, last)
		}
		// The file may have held the new version before the restart (killed after the
		// rename): the start-up check must still be over before the next round, or it
		// could fetch the next round's version itself, before that round's NOTIFY.
		if !harness.Eventually(60*time.Second, 20*time.Millisecond, func() bool {
			return metricValue(t, a.Config.MetricsListen, "dnsagent_zones_unchecked ") == 0
		}) {
			t.Fatalf("round %d: the start-up check has not ended 60 s after the restart", round)
		}
		t.Logf("round %d: converged %v after the restart", round, time.Since(restarted).Round(time.Millisecond))
		a.CheckAlive(t)
	}
	if tmps := temps(); len(tmps) > 0 {
		t.Logf("temp files the killed agents left behind: %v", tmps)
	}
}

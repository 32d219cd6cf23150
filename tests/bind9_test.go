package tests

// End-to-end tests of the bind9 backend (tracker issue 4): the agent binary between a
// private BIND primary and a private named acting as the backend server, driven with
// rndc. Tests are named after the acceptance points (TestBind9AT1 ...).

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// bind9Env is a primary serving zone, a backend named, and an agent with backend_driver
// bind9 between them.
type bind9Env struct {
	p   *harness.Primary
	n   *harness.BackendNamed
	a   *harness.Agent
	z   harness.Zone
	cfg harness.AgentConfig
}

// fooBar is a name a BIND primary refuses to load unless check-names is off.
const fooBar = "foo_bar.example.com. 300 IN A 192.0.2.1"

func startBind9Env(t *testing.T, mode string, records int) *bind9Env {
	t.Helper()
	return startBind9EnvWith(t, mode, records, nil)
}

// startBind9EnvWith is startBind9Env with extra [service:agent] options.
func startBind9EnvWith(t *testing.T, mode string, records int, service map[string]string) *bind9Env {
	t.Helper()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024010101, records)
	z.Extra = []string{fooBar}
	e := &bind9Env{z: z}
	e.p = harness.StartPrimaryWith(t, harness.PrimaryOptions{
		Zones:               map[string]string{zone: z.Text()},
		IXFRFromDifferences: true,
	})
	e.n = harness.StartBackendNamed(t, harness.BackendOptions{})
	e.cfg = bind9AgentConfig(e.p, e.n, mode)
	e.cfg.Service = service
	e.a = harness.StartAgent(t, e.cfg)
	e.cfg = e.a.Config // with the ports and directories filled in, for a restart
	return e
}

// bind9AgentConfig points an agent at the primary and at the backend named.
func bind9AgentConfig(p *harness.Primary, n *harness.BackendNamed, mode string) harness.AgentConfig {
	return bind9AgentConfigTo(p.Addr(), n, mode)
}

// bind9AgentConfigTo is bind9AgentConfig for a primary that is not a harness.Primary.
func bind9AgentConfigTo(masters string, n *harness.BackendNamed, mode string) harness.AgentConfig {
	backend := map[string]string{
		"rndc_host":     "127.0.0.1",
		"rndc_port":     fmt.Sprint(n.ControlPort()),
		"rndc_key_file": n.RNDCKeyFile(),
		"rndc_timeout":  "5",
		"update_mode":   mode,
	}
	var sections string
	if mode == "update" {
		backend["update_key"] = harness.UpdateKeyName
		sections = fmt.Sprintf("[tsig:%s]\nalgorithm = hmac-sha256\nsecret = %s\n", harness.UpdateKeyName, n.UpdateSecret)
	}
	return harness.AgentConfig{
		Masters:          masters,
		AllowNotify:      "127.0.0.1",
		BackendDriver:    "bind9",
		ZoneFilePath:     n.ZoneDir(),
		QueryDestination: n.Addr(),
		Backend:          backend,
		Sections:         sections,
	}
}

// matchesPrimary checks that the backend named serves, authoritatively, exactly what the
// primary serves: SOA by query, every record by AXFR from named, foo_bar by query.
func (e *bind9Env) matchesPrimary(t *testing.T) {
	t.Helper()
	want := primarySet(t, e.p)
	got, err := e.n.AXFRSet(zone)
	if err != nil {
		t.Fatalf("AXFR from the backend named: %v", err)
	}
	if d := harness.DiffSets(want, got, 8); d != "" {
		t.Fatalf("named does not serve the primary's zone: %s", d)
	}
	if s, err := e.n.Serial(zone); err != nil || s != e.p.SOASerial(t, zone) {
		t.Errorf("named's SOA: serial %d (%v), want the primary's %d, authoritative", s, err, e.p.SOASerial(t, zone))
	}
	r := e.n.Query(t, "foo_bar."+zone, dns.TypeA)
	if !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Errorf("foo_bar.%s A: aa=%v %v, want 192.0.2.1 authoritatively", zone, r.Authoritative, r.Answer)
	}
}

// waitServes waits until named serves serial for the zone.
func (e *bind9Env) waitServes(t *testing.T, serial uint32, timeout time.Duration) {
	t.Helper()
	var got uint32
	var err error
	if !harness.Eventually(timeout, 20*time.Millisecond, func() bool {
		got, err = e.n.Serial(zone)
		return err == nil && got == serial
	}) {
		t.Fatalf("named serves serial %d (%v) %v after the NOTIFY, want %d\nagent:\n%s", got, err, timeout, serial, e.a.Output())
	}
}

// agentLogged waits until the agent has logged text after the mark (the transfer summary
// comes once the backend returned, a moment after named serves the result).
func agentLogged(a *harness.Agent, mark int, text string) bool {
	return harness.Eventually(2*time.Second, 10*time.Millisecond, func() bool {
		return strings.Contains(a.Output()[mark:], text)
	})
}

// zoneFiles lists what is left in the zone directory for the zone.
func (e *bind9Env) zoneFiles(t *testing.T) []string {
	var left []string
	for _, name := range dirEntries(t, e.n.ZoneDir()) {
		if strings.Contains(name, "example.com") {
			left = append(left, name)
		}
	}
	return left
}

// Acceptance 1 and 2: CREATE via opcode 14 makes named serve the primary's zone record for
// record, foo_bar included; a NOTIFY after a change brings the new serial and records.
func TestBind9AT1AT2CreateAndNotify(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"reload", "update"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := startBind9Env(t, mode, 500)
			start := time.Now()
			create(t, e.a, 0x0101)
			t.Logf("CREATE of %d records answered in %v", e.z.Count, time.Since(start))
			e.matchesPrimary(t)

			z2 := e.z.Next(20, 30)
			e.p.SetZone(t, zone, z2.Text())
			mark := len(e.n.Output())
			start = time.Now()
			notify(t, e.a, 0x0102)
			e.waitServes(t, z2.Serial, 5*time.Second)
			t.Logf("new serial served %v after the NOTIFY", time.Since(start))
			e.matchesPrimary(t)
			if mode == "update" {
				want := fmt.Sprintf("SOA ns1.example.com. hostmaster.example.com. %d ", z2.Serial)
				if !e.n.WaitLog(mark, want, 2*time.Second) || strings.Contains(e.n.Output()[mark:], fmt.Sprintf("loaded serial %d", z2.Serial)) {
					t.Errorf("in update mode the IXFR should reach named as an UPDATE, without a load; named's log:\n%s", e.n.Output()[mark:])
				}
			}
			e.a.CheckAlive(t)
		})
	}
}

// Acceptance 3: in update mode an IXFR of 10 changed records in a 100,000-record zone
// reaches named as one dynamic update, without a reload, at the primary's serial; and a
// full replace of the dynamic zone (the primary lost its journal) converges too.
func TestBind9AT3IXFRBecomesDynamicUpdate(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("100,000-record zone")
	}
	e := startBind9Env(t, "update", 100_000)
	start := time.Now()
	create(t, e.a, 0x0301)
	t.Logf("CREATE of %d records answered in %v", e.z.Count, time.Since(start))

	z2 := e.z.Next(5, 5) // 5 records deleted, 5 added
	e.p.SetZone(t, zone, z2.Text())
	mark, agentMark := len(e.n.Output()), len(e.a.Output())
	start = time.Now()
	notify(t, e.a, 0x0302)
	e.waitServes(t, z2.Serial, 5*time.Second)
	t.Logf("IXFR of 10 changed records served by named %v after the NOTIFY", time.Since(start))
	if !e.n.WaitLog(mark, fmt.Sprintf("hostmaster.example.com. %d ", z2.Serial), 2*time.Second) {
		t.Errorf("named did not log an UPDATE; its log:\n%s", e.n.Output()[mark:])
	}
	log := e.n.Output()[mark:]
	if strings.Contains(log, fmt.Sprintf("loaded serial %d", z2.Serial)) || strings.Contains(log, "freezing zone") {
		t.Errorf("named reloaded the zone; its log:\n%s", log)
	}
	t.Logf("named's log of the change:\n%s", log)
	if !agentLogged(e.a, agentMark, `"type": "IXFR",`) {
		t.Errorf("the agent did not log an IXFR; its log:\n%s", e.a.Output()[agentMark:])
	}
	e.matchesPrimary(t)

	// The primary loses its journal: its history now starts after the agent's serial,
	// so the IXFR gets the whole zone back and the agent replaces the dynamic zone.
	z3 := z2.Next(5, 5)
	e.p.SetZone(t, zone, z3.Text())
	if err := os.Remove(filepath.Join(e.p.Dir(), "db.example.com.jnl")); err != nil {
		t.Fatalf("removing the primary's journal: %v", err)
	}
	z4 := z3.Next(5, 5)
	e.p.SetZone(t, zone, z4.Text())
	mark, agentMark = len(e.n.Output()), len(e.a.Output())
	start = time.Now()
	notify(t, e.a, 0x0303)
	e.waitServes(t, z4.Serial, 10*time.Second)
	t.Logf("full replace of the dynamic zone served %v after the NOTIFY", time.Since(start))
	if !e.n.WaitLog(mark, "thawing zone 'example.com/IN'", 2*time.Second) {
		t.Errorf("a full replace should go through rndc freeze/thaw; named's log:\n%s", e.n.Output()[mark:])
	}
	if !agentLogged(e.a, agentMark, `"type": "IXFR-full"`) {
		t.Errorf("the agent did not log the primary's full answer to its IXFR; its log:\n%s", e.a.Output()[agentMark:])
	}
	e.matchesPrimary(t)

	// Dynamic again afterwards.
	z5 := z4.Next(5, 5)
	e.p.SetZone(t, zone, z5.Text())
	mark = len(e.n.Output())
	notify(t, e.a, 0x0304)
	e.waitServes(t, z5.Serial, 5*time.Second)
	if !e.n.WaitLog(mark, fmt.Sprintf("hostmaster.example.com. %d ", z5.Serial), 2*time.Second) {
		t.Errorf("after the full replace an IXFR should be an UPDATE again; named's log:\n%s", e.n.Output()[mark:])
	}
	e.matchesPrimary(t)
}

// Acceptance 4: DELETE makes named stop serving the zone and removes the zone file and
// the journal; a new CREATE of the zone works.
func TestBind9AT4DeleteAndCreateAgain(t *testing.T) {
	t.Parallel()
	e := startBind9Env(t, "update", 200)
	create(t, e.a, 0x0401)
	z2 := e.z.Next(3, 3)
	e.p.SetZone(t, zone, z2.Text())
	notify(t, e.a, 0x0402)
	e.waitServes(t, z2.Serial, 5*time.Second)
	if left := e.zoneFiles(t); !contains(strings.Join(left, " "), "example.com.zone.jnl") {
		t.Errorf("no journal after an update (files: %v); the test would prove nothing", left)
	}

	del := harness.DeleteMsg(0x0403, zone)
	expectBytes(t, "DELETE", udp(t, e.a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf400))
	if r := e.n.Query(t, zone, dns.TypeSOA); r.Rcode != dns.RcodeRefused {
		t.Errorf("named answers the deleted zone's SOA with %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if left := e.zoneFiles(t); len(left) != 0 {
		t.Errorf("after DELETE these files are left: %v", left)
	}
	if out, err := e.n.Rndc("showzone", "example.com"); err == nil {
		t.Errorf("named still has the zone's configuration: %s", out)
	}

	create(t, e.a, 0x0404)
	e.matchesPrimary(t)
	e.a.CheckAlive(t)
}

// Acceptance 5: an agent restart with the zone already in named: CREATE is a success
// without a duplicate, nothing is logged as an error, and the zone keeps updating.
func TestBind9AT5AgentRestart(t *testing.T) {
	t.Parallel()
	e := startBind9Env(t, "update", 200)
	create(t, e.a, 0x0501)
	harness.StopAgent(e.a)

	a2 := harness.StartAgent(t, e.cfg)
	create(t, a2, 0x0502)
	if left := e.zoneFiles(t); len(left) != 1 || left[0] != "example.com.zone" {
		t.Errorf("files after the restart and a second CREATE: %v", left)
	}
	out, err := e.n.Rndc("showzone", "example.com")
	if err != nil || strings.Count(out, "zone \"example.com\"") != 1 {
		t.Errorf("named's configuration of the zone after the restart: %v %s", err, out)
	}

	z2 := e.z.Next(3, 3)
	e.p.SetZone(t, zone, z2.Text())
	notify(t, a2, 0x0503)
	e.a = a2
	e.waitServes(t, z2.Serial, 5*time.Second)
	e.matchesPrimary(t)
	for _, level := range []string{"ERROR", "WARN"} {
		for _, line := range strings.Split(a2.Output(), "\n") {
			if strings.Contains(line, "\t"+level+"\t") || strings.Contains(line, `"level":"`+strings.ToLower(level)) {
				t.Errorf("the restarted agent logged: %s", line)
			}
		}
	}
	a2.CheckAlive(t)
}

// Acceptance 6: a hostile zone name is refused and nothing is written; an rndc failure
// (wrong key, control channel closed) and named being down make CREATE fail with SERVFAIL
// and a log line carrying the reason, and nothing is left in the zone directory.
func TestBind9AT6HostileNamesAndRNDCFailures(t *testing.T) {
	t.Parallel()
	e := startBind9Env(t, "reload", 50)

	for i, name := range []string{`a"b.example.`, `x;y.example.`, `{a}.example.`, `../../etc.`, `a b.example.`} {
		req := harness.CreateMsg(0x0600+uint16(i), name)
		r := udp(t, e.a.Addr(), req, 25*time.Second)
		if rcode := harness.Flags(r) & 0xf; rcode == dns.RcodeSuccess {
			t.Errorf("CREATE %q: %s, want a refusal", name, harness.DescribeReply(r))
		}
	}
	if n := dirEntries(t, e.n.ZoneDir()); len(n) != 0 {
		t.Errorf("hostile names wrote %v", n)
	}
	if out, err := e.n.Rndc("status"); err != nil {
		t.Fatalf("named is not running after the hostile names: %v %s", err, out)
	}
	e.a.CheckAlive(t)

	wrongKey := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrongKey, []byte("key \"rndc-key\" { algorithm hmac-sha256; secret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\"; };\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failures := []struct {
		name    string
		backend map[string]string
		stop    bool
		reason  string // in the agent's log
	}{
		{"wrong rndc key", map[string]string{"rndc_key_file": wrongKey}, false, "named closed the control channel connection: a wrong key"},
		{"control channel closed", map[string]string{"rndc_port": fmt.Sprint(harness.FreePort(t))}, false, "connection refused"},
		{"named down", nil, true, "connection refused"},
	}
	for i, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			cfg := bind9AgentConfig(e.p, e.n, "reload")
			for k, v := range f.backend {
				cfg.Backend[k] = v
			}
			a := harness.StartAgent(t, cfg)
			if f.stop {
				e.n.Stop()
			}
			req := harness.CreateMsg(0x0610+uint16(i), zone)
			expectBytes(t, "CREATE with "+f.name, udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf002))
			if !harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(a.Output(), f.reason) }) {
				t.Errorf("the agent's log does not say %q:\n%s", f.reason, a.Output())
			}
			if n := dirEntries(t, e.n.ZoneDir()); len(n) != 0 {
				t.Errorf("a failed CREATE left %v", n)
			}
			a.CheckAlive(t)
		})
	}
}

// A zone named.conf defines itself is not the agent's: CREATE gets SERVFAIL, the log says
// why, and named keeps serving its own version.
func TestBind9CreateOfZoneDefinedInNamedConf(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024010101, 20)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	n := harness.StartBackendNamed(t, harness.BackendOptions{StaticZones: map[string]string{zone: z.WithSerial(7).Text()}})
	a := harness.StartAgent(t, bind9AgentConfig(p, n, "reload"))

	req := harness.CreateMsg(0x0701, zone)
	expectBytes(t, "CREATE of a zone named.conf defines", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf002))
	notScheduled(t, a, zone)
	if !agentLogged(a, 0, "outside zone_file_path") {
		t.Errorf("the agent's log does not say the zone is not its own:\n%s", a.Output())
	}
	if s, err := n.Serial(zone); err != nil || s != 7 {
		t.Errorf("named serves serial %d (%v), want its own 7", s, err)
	}
	if left := dirEntries(t, n.ZoneDir()); len(left) != 0 {
		t.Errorf("files written: %v", left)
	}
}

// Issue 12 item 5: named answering SERVFAIL for a zone it has but has not loaded (named
// restarting and loading its zones) does not make the agent drop the zone: the checks
// fail and are retried, and once named serves the zone again a change on the primary
// reaches it without any NOTIFY. Only rndc showzone says a zone is gone.
func TestBind9ServfailKeepsZoneScheduled(t *testing.T) {
	t.Parallel()
	e := startBind9EnvWith(t, "reload", 50, map[string]string{"refresh_interval": "1", "retry_min": "0.2"})
	create(t, e.a, 0x0701)
	e.matchesPrimary(t)

	// named restarts and cannot load the zone yet: it has it, and answers SERVFAIL.
	path := filepath.Join(e.n.ZoneDir(), "example.com.zone")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e.n.Stop()
	if err := os.WriteFile(path, []byte("$ORIGIN example.com.\n@ 3600 IN NOTATYPE x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.n.Restart(t)
	mark := len(e.a.Output())
	if r := e.n.Query(t, zone, dns.TypeSOA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("named answers %s for the zone it cannot load, want SERVFAIL: the test proves nothing", dns.RcodeToString[r.Rcode])
	}
	if !agentLogged(e.a, mark, "answers SERVFAIL") {
		t.Errorf("the agent did not log named's SERVFAIL within 2 s of the restart:\n%s", e.a.Output()[mark:])
	}
	time.Sleep(time.Second) // a few more failed checks

	// named has loaded the zone again; the primary changes it and notifies nobody.
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := e.n.Rndc("reload", "example.com"); err != nil {
		t.Fatalf("rndc reload: %v: %s", err, out)
	}
	e.waitServes(t, e.z.Serial, 5*time.Second)
	z2 := e.z.Next(3, 3)
	e.p.SetZone(t, zone, z2.Text())
	start := time.Now()
	e.waitServes(t, z2.Serial, 15*time.Second)
	t.Logf("the primary's change reached named %v later, without a NOTIFY", time.Since(start))
	e.matchesPrimary(t)
	if log := e.a.Output()[mark:]; strings.Contains(log, "no longer in the backend") {
		t.Errorf("the agent took SERVFAIL for a deleted zone:\n%s", log)
	}
	// The status is recorded once the backend returned, a moment after named serves it.
	var code int
	var body string
	if !harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
		code, body = httpGet(t, e.a, "/zones/"+zone)
		return code == 200 && strings.Contains(strings.ReplaceAll(body, " ", ""), fmt.Sprintf(`"applied_serial":%d`, z2.Serial))
	}) {
		t.Errorf("/zones/%s: %d %s, want the zone at serial %d", zone, code, body, z2.Serial)
	}
	e.a.CheckAlive(t)
}

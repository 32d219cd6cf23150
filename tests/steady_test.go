package tests

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

// An agent runs for months: whatever a zone, a transfer or a query takes, it must give
// back. Each cycle here creates zones of several messages each, signed (TSIG), from two
// masters; changes them on the primary while both masters die mid-stream (every transfer
// is cut several messages in, and retried); brings the second master back while
// the first goes on dying; relays queries over UDP and TCP (with malformed ones and
// connections left half-written); and deletes every zone. After the first cycle, which
// fills the connection pools, every later one must end with the goroutines and open
// descriptors the first ended with: a leak of one per zone, transfer or query would add
// tens a cycle.
func TestSteadyStateGivesBackWhatACycleTook(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"file", "bind9", "powerdns"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			steadyState(t, driver)
		})
	}
}

// steadyTarget is the agent under test and how to read what its backend serves.
type steadyTarget struct {
	a      *harness.Agent
	serial func(zone string) (uint32, error) // the serial served; an error once it is gone
}

func steadyState(t *testing.T, driver string) {
	harness.Require(t, "named", "rndc")
	const nZones, cycles = 24, 4
	names := make([]string, nZones)
	versions := make(map[string]harness.Zone, nZones)
	texts := make(map[string]string, nZones)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d.steady.example", i)
		versions[names[i]] = harness.NewZone(names[i], 100, 4000) // about 200 KB: 13 messages from named
		texts[names[i]] = versions[names[i]].Text()
	}
	// Every transfer is signed (TSIG), so the signing state of each must go too.
	key := harness.NewTSIGKey(t, "steady-xfr", "hmac-sha256")
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: texts, TransferKeys: []harness.TSIGKey{key}})
	if _, err := harness.AXFR(p.Addr(), names[0]); err == nil {
		t.Fatal("test setup: the primary serves an unsigned AXFR")
	}
	// Two masters, each a proxy in front of the primary: both die mid-stream, then the
	// first goes on dying while the second serves.
	masters := [2]*harness.Proxy{harness.StartProxy(t, p.Addr()), harness.StartProxy(t, p.Addr())}
	var cfg harness.AgentConfig
	var tg steadyTarget
	switch driver {
	case "file":
		cfg = harness.AgentConfig{AllowNotify: "127.0.0.1", QueryDestination: p.Addr()}
		tg.serial = func(zone string) (uint32, error) { return harness.ZoneFileSerial(tg.a.ZoneFile(zone), zone) }
	case "bind9":
		nb := harness.StartBackendNamed(t, harness.BackendOptions{})
		cfg = bind9AgentConfigTo("", nb, "reload")
		tg.serial = func(zone string) (uint32, error) { return harness.QuerySerial(nb.Addr(), zone) }
	case "powerdns":
		e := startPDNSEnv(t, harness.PDNSOptions{})
		cfg = harness.AgentConfig{BackendDriver: "powerdns", AllowNotify: "127.0.0.1", QueryDestination: e.p.Addr(),
			Backend: map[string]string{"zone_file_path": "-", "dsn": e.m.DSN(e.dbname),
				"pdns_control": harness.LookPath("pdns_control"), "pdns_socket_dir": e.p.SocketDir()}}
		tg.serial = func(zone string) (uint32, error) { return harness.QuerySerial(e.p.Addr(), zone) }
	}
	cfg.Masters = masters[0].Addr() + "," + masters[1].Addr()
	cfg.Service = map[string]string{"masters_tsig_key": key.Name}
	cfg.Sections += key.Section()
	tg.a = harness.StartAgent(t, cfg)

	var baseGoroutines, baseFDs int
	for cycle := 1; cycle <= cycles && !t.Failed(); cycle++ {
		steadyCycle(t, tg, p, masters, names, versions)
		if t.Failed() {
			t.Fatalf("cycle %d failed; its leftovers would be counted as leaks", cycle)
		}
		goroutines, fds := settled(t, tg.a)
		t.Logf("after cycle %d: %d goroutines, %d open descriptors", cycle, goroutines, fds)
		for _, state := range []string{"idle", "queued", "transferring", "retrying"} {
			if n := metric(t, tg.a, `dnsagent_zones{state="`+state+`"}`); n != 0 {
				t.Errorf("after cycle %d, every zone deleted, the agent still schedules %v zones %s", cycle, n, state)
			}
		}
		if cycle == 1 {
			baseGoroutines, baseFDs = goroutines, fds
			continue
		}
		// Slack for what comes and goes on its own: a pooled connection the primary
		// closed, the goroutines of the /metrics scrape that counts them.
		if goroutines > baseGoroutines+steadySlack {
			t.Errorf("after cycle %d the agent runs %d goroutines, %d after the first: it keeps what finished work started",
				cycle, goroutines, baseGoroutines)
		}
		if fds > baseFDs+steadySlack {
			t.Errorf("after cycle %d the agent holds %d descriptors open, %d after the first: it leaks files or sockets",
				cycle, fds, baseFDs)
		}
	}
	tg.a.CheckAlive(t)
}

// steadyCutAfter is where a dying master cuts a transfer: after about 6 of the 13
// messages named sends for a zone (measured once: 13 for an AXFR).
const steadyCutAfter = 100_000

// steadySlack is the growth past the first cycle's count that is not taken for a leak:
// far below the cycle's 24 zones, its transfers (72 at least) and 300 queries.
const steadySlack = 6

// steadyCycle is one cycle of TestSteadyStateGivesBackWhatACycleTook; versions holds
// each zone's text on the primary, and is moved on.
func steadyCycle(t *testing.T, tg steadyTarget, p *harness.Primary, masters [2]*harness.Proxy, names []string, versions map[string]harness.Zone) {
	t.Helper()
	a := tg.a
	each := func(f func(i int, name string)) {
		var wg sync.WaitGroup
		for i, name := range names {
			wg.Go(func() { f(i, name) })
		}
		wg.Wait()
	}
	served := func(what string) {
		for _, name := range names {
			want := versions[name].Serial
			if !harness.Eventually(15*time.Second, 20*time.Millisecond, func() bool {
				s, err := tg.serial(name)
				return err == nil && s == want
			}) {
				s, err := tg.serial(name)
				t.Errorf("%s: %s holds serial %d (%v), want %d", what, name, s, err, want)
			}
		}
	}

	each(func(i int, name string) {
		req := harness.CreateMsg(uint16(i), name)
		if r, err := harness.ExchangeUDP(a.Addr(), req, 25*time.Second); err != nil || string(r) != string(harness.Reply(req, 0xf400)) {
			t.Errorf("CREATE %s: %s (%v)", name, harness.DescribeReply(r), err)
		}
	})
	served("after CREATE")

	// The masters die mid-stream, several messages in (each TSIG-verified, applied to a
	// spool or a transaction): every transfer the NOTIFYs start is cut, and retried.
	// Reset: a connection kept open under the earlier mode (the agent's pool) would not be.
	cuts := func() int64 { return masters[0].Cuts() + masters[1].Cuts() }
	cutsBefore, logged := cuts(), len(a.Output())
	for _, m := range masters {
		m.SetCut(steadyCutAfter)
		m.Reset()
	}
	for _, name := range names {
		versions[name] = versions[name].Next(20, 20)
		p.SetZone(t, name, versions[name].Text())
	}
	each(func(i int, name string) {
		req := harness.NotifyMsg(uint16(100+i), name, false)
		if r, err := harness.ExchangeUDP(a.Addr(), req, 3*time.Second); err != nil || string(r) != string(harness.Reply(req, 0xa400)) {
			t.Errorf("NOTIFY %s: %s (%v)", name, harness.DescribeReply(r), err)
		}
	})
	if !harness.Eventually(15*time.Second, 20*time.Millisecond, func() bool { return cuts()-cutsBefore >= int64(len(names)) }) {
		t.Errorf("%d transfers cut, want one for each of the %d zones at least; the agent logged since the cut:\n%s",
			cuts()-cutsBefore, len(names), a.Output()[logged:])
	}
	// The second master comes back; the first still dies mid-stream.
	masters[1].Pass()
	masters[1].Reset()
	each(func(i int, name string) {
		harness.ExchangeUDP(a.Addr(), harness.NotifyMsg(uint16(200+i), name, false), 3*time.Second) //nolint:errcheck // checked by served
	})
	served("after the primary came back")

	masters[0].Pass()
	masters[0].Reset()

	steadyQueries(t, a, names)

	each(func(i int, name string) {
		req := harness.DeleteMsg(uint16(300+i), name)
		if r, err := harness.ExchangeUDP(a.Addr(), req, 25*time.Second); err != nil || string(r) != string(harness.Reply(req, 0xf400)) {
			t.Errorf("DELETE %s: %s (%v)", name, harness.DescribeReply(r), err)
		}
	})
	for _, name := range names {
		if !harness.Eventually(5*time.Second, 20*time.Millisecond, func() bool { _, err := tg.serial(name); return err != nil }) {
			t.Errorf("%s: still served 5 s after its DELETE was answered", name)
		}
	}
}

// steadyQueries relays queries for the zones' names over UDP and TCP, and sends what a
// client gets wrong: garbage datagrams, and TCP connections that stop mid-message.
func steadyQueries(t *testing.T, a *harness.Agent, names []string) {
	t.Helper()
	for i := range 240 {
		name := names[i%len(names)]
		m := new(dns.Msg).SetQuestion(dns.Fqdn("www"+strconv.Itoa(i%50)+"."+name), dns.TypeA)
		network := "udp"
		if i%8 == 0 {
			network = "tcp"
		}
		if r, err := harness.Exchange(network, a.Addr(), m, 3*time.Second); err != nil || r.Rcode == dns.RcodeServerFailure {
			t.Errorf("query %s over %s through the agent: %v %v", m.Question[0].Name, network, r, err)
			return
		}
	}
	for range 30 {
		garbage := make([]byte, 5+rand.IntN(60))
		for j := range garbage {
			garbage[j] = byte(rand.Uint32())
		}
		harness.SendUDP(a.Addr(), garbage) //nolint:errcheck // unanswered or FORMERR
	}
	for range 30 {
		c, err := net.DialTimeout("tcp", a.Addr(), 2*time.Second)
		if err != nil {
			t.Errorf("TCP connect to the agent: %v", err)
			return
		}
		c.Write([]byte{0, 40, 0x12, 0x34, 0, 0}) //nolint:errcheck // a length, then 4 of its 40 bytes
		c.Close()
	}
}

// settled waits until the agent's goroutines and open descriptors stopped falling for a
// second (work the cycle started winds down: idle connections close), and returns the
// lowest counts seen. The scrape that reads go_goroutines runs goroutines of its own (the
// registry gathers its collectors concurrently), which lift some samples by one or two;
// the lowest count is what stays, and a leak lifts it too.
func settled(t *testing.T, a *harness.Agent) (goroutines, fds int) {
	t.Helper()
	count := func() (int, int) {
		g, err := harness.Goroutines(a.Config.MetricsListen)
		if err != nil {
			t.Fatalf("go_goroutines: %v", err)
		}
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.PID()))
		if err != nil {
			t.Fatalf("the agent's descriptors: %v", err)
		}
		return g, len(ents)
	}
	goroutines, fds = count()
	fell := time.Now()
	for deadline := fell.Add(30 * time.Second); time.Since(fell) < time.Second && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if g, f := count(); g < goroutines || f < fds {
			goroutines, fds, fell = min(g, goroutines), min(f, fds), time.Now()
		}
	}
	return goroutines, fds
}

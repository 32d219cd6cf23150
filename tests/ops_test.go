package tests

// End-to-end tests of operating the agent (issue 6): zone status and metrics after a
// failed transfer, readiness following the backend, SIGTERM during a transfer, and the
// `dnsagent send` client.

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// httpGet returns the status code and body of a GET on the agent's HTTP endpoints.
func httpGet(t *testing.T, a *harness.Agent, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.Config.MetricsListen + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// notScheduled checks that the agent keeps no state for zone after a CREATE it refused:
// /zones/NAME does not know it, so it is neither listed nor checked again.
func notScheduled(t *testing.T, a *harness.Agent, zone string) {
	t.Helper()
	if code, body := httpGet(t, a, "/zones/"+zone); code != http.StatusNotFound {
		t.Errorf("/zones/%s after the refused CREATE: %d %s, want 404 (nothing scheduled)", zone, code, body)
	}
}

// metric returns the value of one sample of /metrics, e.g.
// `dnsagent_transfers_total{result="ok",type="AXFR"}`; 0 when absent.
func metric(t *testing.T, a *harness.Agent, sample string) float64 {
	t.Helper()
	_, body := httpGet(t, a, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}

func TestOpsStatusAndMetricsAfterFailedTransfer(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 1, 200)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	proxy := harness.StartDNSProxy(t, p.Addr())
	a := harness.StartAgent(t, harness.AgentConfig{
		Masters: proxy.Addr(), AllowNotify: "127.0.0.1",
		Service: map[string]string{"retry_min": "0.5", "log_format": "json"},
	})
	create(t, a, 1)

	proxy.Down()
	p.SetZone(t, zone, z.Next(5, 5).Text())
	notify(t, a, 2)
	var st xfrStatus
	if !harness.Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		st, _ = xfrZoneStatus(t, a, zone)
		return st.Failures >= 1
	}) {
		t.Fatalf("no failure recorded while the primary is down: %s", st)
	}
	if st.AppliedSerial == nil || *st.AppliedSerial != 1 || st.PrimarySerial == nil || *st.PrimarySerial != 1 ||
		st.LastError == "" || st.NextCheck.IsZero() || st.State != "retrying" && st.State != "queued" && st.State != "transferring" {
		t.Errorf("status while the primary is down: %s; want applied and primary serial 1, the error and the next retry", st)
	}
	if !strings.Contains(st.LastError, "SOA") {
		t.Errorf("last_error %q does not say what failed", st.LastError)
	}
	for sample, least := range map[string]float64{
		`dnsagent_requests_total{opcode="CC",rcode="NOERROR"}`:     1,
		`dnsagent_requests_total{opcode="NOTIFY",rcode="NOERROR"}`: 1,
		`dnsagent_transfers_total{result="ok",type="AXFR"}`:        1,
		`dnsagent_transfer_records_total`:                          200,
	} {
		if got := metric(t, a, sample); got < least {
			t.Errorf("%s = %v, want at least %v", sample, got, least)
		}
	}
	if got := metric(t, a, `dnsagent_zones{state="idle"}`); got != 0 {
		t.Errorf(`dnsagent_zones{state="idle"} = %v while the zone is failing`, got)
	}

	proxy.Pass() // the primary is back: the retry brings the zone up to date, no NOTIFY
	if !harness.Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		st, _ = xfrZoneStatus(t, a, zone)
		return st.AppliedSerial != nil && *st.AppliedSerial == 2 && st.Failures == 0
	}) {
		t.Fatalf("zone did not recover: %s", st)
	}
	if got := metric(t, a, `dnsagent_zones{state="idle"}`); got != 1 {
		t.Errorf(`dnsagent_zones{state="idle"} = %v after recovery, want 1`, got)
	}
	if got := metric(t, a, `dnsagent_transfers_total{result="ok",type="IXFR-full"}`) +
		metric(t, a, `dnsagent_transfers_total{result="ok",type="IXFR"}`); got != 1 {
		t.Errorf("IXFR transfers counted %v after recovery, want 1", got)
	}
}

// rowsAgent is an agent writing PowerDNS's rows in MariaDB's database db, with no
// pdns_server to tell.
func rowsAgent(p *harness.Primary, m *harness.MariaDB, db string) harness.AgentConfig {
	return harness.AgentConfig{
		BackendDriver: "powerdns", Masters: p.Addr(), AllowNotify: "127.0.0.1",
		Backend: map[string]string{"zone_file_path": "-", "dsn": m.DSN(db), "pdns_control_enabled": "false"},
	}
}

// aliveNotReady checks the agent's HTTP endpoints with MariaDB down: /healthz 200 (the
// process is alive), /readyz 503 naming the backend.
func aliveNotReady(t *testing.T, a *harness.Agent) {
	t.Helper()
	if code, body := httpGet(t, a, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "backend") {
		t.Errorf("/readyz = %d %q with MariaDB down, want 503 naming the backend", code, body)
	}
	if code, _ := httpGet(t, a, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d with MariaDB down: the process is alive", code)
	}
}

func TestOpsReadyzFollowsTheBackend(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc", "mariadbd", "mariadb-install-db")
	p := harness.StartPrimary(t, map[string]string{zone: harness.GenerateZone(zone, 1, 10)})
	m := harness.StartMariaDB(t)
	a := harness.StartAgent(t, rowsAgent(p, m, m.NewPDNSDatabase(t)))
	if code, body := httpGet(t, a, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q with MariaDB up", code, body)
	}
	if code, _ := httpGet(t, a, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	m.Stop(t)
	aliveNotReady(t, a)
	m.Start(t)
	if !harness.Eventually(15*time.Second, 100*time.Millisecond, func() bool {
		code, _ := httpGet(t, a, "/readyz")
		return code == http.StatusOK
	}) {
		t.Errorf("/readyz did not recover once MariaDB was back")
	}
}

// At boot MariaDB may come up after the agent. The agent does not exit (systemd's start
// limit would give up on it): it serves, says why it is not ready, and once the database
// answers it lists its zones and creates new ones.
func TestOpsStartsBeforeTheDatabase(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc", "mariadbd", "mariadb-install-db")
	p := harness.StartPrimary(t, map[string]string{zone: harness.GenerateZone(zone, 1, 10)})
	m := harness.StartMariaDB(t)
	db := m.NewPDNSDatabase(t)
	m.Stop(t)
	a := harness.StartAgent(t, rowsAgent(p, m, db))
	if !strings.Contains(a.Output(), "cannot list the backend's zones") {
		t.Errorf("the agent does not say why it is not ready:\n%s", a.Output())
	}
	aliveNotReady(t, a)

	m.Start(t)
	if !harness.Eventually(20*time.Second, 100*time.Millisecond, func() bool {
		code, _ := httpGet(t, a, "/readyz")
		return code == http.StatusOK && strings.Contains(a.Output(), "scheduled start-up checks")
	}) {
		t.Fatalf("not ready 20 s after MariaDB came up:\n%s", a.Output())
	}
	req := harness.CreateMsg(0x0b01, zone)
	expectBytes(t, "CREATE once MariaDB is up", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
	var soa string
	err := m.DB(t, db).QueryRowContext(stmtCtx(t), `SELECT r.content FROM records r JOIN domains d ON d.id = r.domain_id
		WHERE d.name = ? AND r.type = 'SOA'`, strings.TrimSuffix(zone, ".")).Scan(&soa)
	if err != nil || strings.Fields(soa + " x x x")[2] != "1" {
		t.Errorf("the zone's SOA in the database after the CREATE: %q (%v), want serial 1", soa, err)
	}
	a.CheckAlive(t)
}

func TestOpsSIGTERMDuringTransferKeepsACompleteZone(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	for _, tc := range []struct {
		name string
		hold time.Duration // how long the proxy holds the primary's answer
		wait time.Duration // from the transfer's request to SIGTERM, when nothing is held
	}{
		{"waiting for the primary", 3 * time.Second, 0},
		{"mid-stream", 0, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 100000
			z := harness.NewZone(zone, 1, n)
			p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
			proxy := harness.StartDNSProxy(t, p.Addr())
			a := harness.StartAgent(t, harness.AgentConfig{Masters: proxy.Addr(), AllowNotify: "127.0.0.1"})
			create(t, a, 1)
			old, err := fileSet(a)
			if err != nil {
				t.Fatal(err)
			}
			p.SetZone(t, zone, z.Next(n/2, n/2).Text()) // half the zone changes: a long transfer
			held := harness.DNSFault{Delay: tc.hold}
			proxy.SetMode(harness.DNSProxyMode{IXFR: held, AXFR: held})
			base := proxy.Transfers()
			notify(t, a, 2)
			if tc.hold > 0 && !harness.Eventually(5*time.Second, 10*time.Millisecond, func() bool { return proxy.Held() > 0 }) {
				t.Fatal("no transfer started")
			}
			// Mid-stream: the request has passed the proxy, so named is sending the
			// 100,000-record answer when the signal comes.
			if !harness.Eventually(5*time.Second, time.Millisecond, func() bool { return proxy.Transfers() > base }) {
				t.Fatal("no transfer requested")
			}
			time.Sleep(tc.wait)
			start := time.Now()
			if err := a.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if !harness.Eventually(10*time.Second, 20*time.Millisecond, a.Exited) {
				t.Fatalf("agent still running 10 s after SIGTERM")
			}
			t.Logf("agent exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
			got, err := fileSet(a)
			if err != nil {
				t.Fatalf("after SIGTERM the zone file does not parse: %v", err)
			}
			if !equalSets(got, old) && !equalSets(got, primarySet(t, p)) {
				t.Errorf("after SIGTERM the zone file is neither the old nor the new complete version (%d records)", len(got))
			}
		})
	}
}

func equalSets(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

func TestOpsSendBehavesLikeDesignatesWorker(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	p := harness.StartPrimary(t, map[string]string{zone: harness.GenerateZone(zone, 1, 10)})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"})
	code, out := harness.RunAgentCommand(t, 30*time.Second, "send", "create", zone, "--server", a.Addr())
	if code != 0 || !strings.Contains(out, "opcode: CC, status: NOERROR") {
		t.Errorf("send create: exit %d, output %q; want 0 and opcode CC (14) with NOERROR", code, out)
	}
	if _, err := harness.ParseZoneFile(a.ZoneFile(zone), "invalid."); err != nil {
		t.Errorf("send create did not create the zone: %v", err)
	}
	code, out = harness.RunAgentCommand(t, 30*time.Second, "send", "notify", zone, "--server", a.Addr(), "--tcp")
	if code != 0 {
		t.Errorf("send notify --tcp: exit %d, output %q", code, out)
	}

	refusing := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "192.0.2.1"})
	code, out = harness.RunAgentCommand(t, 30*time.Second, "send", "create", zone, "--server", refusing.Addr())
	if code == 0 || !strings.Contains(out, "REFUSED") {
		t.Errorf("send create refused: exit %d, output %q; want non-zero and REFUSED", code, out)
	}
	code, _ = harness.RunAgentCommand(t, 30*time.Second, "send", "bogus", zone)
	if code != 2 {
		t.Errorf("send bogus: exit %d, want 2 (usage)", code)
	}
}

// Unless cpus or GOMAXPROCS says otherwise, the agent runs its Go code on one thread while
// no zone is worked on, and on Go's own number of them (the CPUs here) while one is: a
// transfer the proxy holds runs on them all, and a second after it ends the agent is back
// on one (go_sched_gomaxprocs_threads). cpus = 3 holds it at 3.
func TestOpsCPUsFollowTheWork(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named")
	found := runtime.GOMAXPROCS(0) // Go's own, as the agent finds it: nothing set it here
	idle := 1
	if os.Getenv("GOMAXPROCS") != "" || found == 1 {
		idle = found // fixed
	}
	z := harness.NewZone(zone, 1, 3000) // a transfer of many messages
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	proxy := harness.StartDNSProxy(t, p.Addr())
	a := harness.StartAgent(t, harness.AgentConfig{Masters: proxy.Addr(), AllowNotify: "127.0.0.1"})
	procs := func() int { return int(metric(t, a, "go_sched_gomaxprocs_threads")) }
	create(t, a, 1)
	if !harness.Eventually(3*time.Second, 20*time.Millisecond, func() bool { return procs() == idle }) {
		t.Fatalf("idle: GOMAXPROCS %d, want %d", procs(), idle)
	}

	p.SetZone(t, zone, z.Next(1500, 1500).Text())
	held := harness.DNSFault{Delay: 2 * time.Second}
	proxy.SetMode(harness.DNSProxyMode{IXFR: held, AXFR: held})
	notify(t, a, 2)
	if !harness.Eventually(5*time.Second, 10*time.Millisecond, func() bool { return proxy.Held() > 0 }) {
		t.Fatal("no transfer started")
	}
	if got := procs(); got != found {
		t.Errorf("during a transfer: GOMAXPROCS %d, want %d", got, found)
	}
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		serial, err := harness.ZoneFileSerial(a.ZoneFile(zone), zone)
		return err == nil && serial == z.Serial+1
	}) {
		t.Fatal("the held transfer was not applied")
	}
	applied := time.Now()
	if !harness.Eventually(5*time.Second, 20*time.Millisecond, func() bool { return procs() == idle }) {
		t.Fatalf("5 s after the transfer: GOMAXPROCS %d, want %d", procs(), idle)
	}
	t.Logf("back to %d thread(s) %v after the transfer was applied", idle, time.Since(applied).Round(10*time.Millisecond))

	fixed := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), Service: map[string]string{"cpus": "3"}})
	if got := metric(t, fixed, "go_sched_gomaxprocs_threads"); got != 3 {
		t.Errorf("cpus = 3: GOMAXPROCS %v, want 3", got)
	}
}

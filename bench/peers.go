package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// pdnsSecondary is a private pdns_server in secondary mode on its own MariaDB: the
// PowerDNS way of doing the agent's job. Its settings are the harness's pdns_server's
// (every cache off, one receiver and one distributor thread) plus secondary mode.
type pdnsSecondary struct {
	t    testing.TB
	m    *harness.MariaDB
	db   *sql.DB
	dir  string
	port int
	cmd  *exec.Cmd
	out  *harness.Buffer
	done chan struct{}
}

func startPDNSSecondary(t testing.TB) *pdnsSecondary {
	t.Helper()
	server := harness.LookPath("pdns_server")
	m := harness.StartMariaDB(t)
	dbname := m.NewPDNSDatabase(t)
	p := &pdnsSecondary{t: t, m: m, dir: t.TempDir(), port: harness.FreePort(t), out: harness.NewBuffer(1 << 20), done: make(chan struct{})}
	p.db = openDB(t, m, dbname)
	conf := []string{
		"launch=gmysql", "gmysql-host=127.0.0.1", fmt.Sprintf("gmysql-port=%d", m.Port()),
		"gmysql-user=root", "gmysql-dbname=" + dbname, "gmysql-dnssec=yes",
		"local-address=127.0.0.1", fmt.Sprintf("local-port=%d", p.port), "socket-dir=" + p.dir,
		"cache-ttl=0", "query-cache-ttl=0", "negquery-cache-ttl=0", "zone-cache-refresh-interval=0",
		"guardian=no", "daemon=no", "disable-syslog=yes", "write-pid=no", "webserver=no", "api=no",
		"security-poll-suffix=", "receiver-threads=1", "distributor-threads=1", "loglevel=5",
		// Secondary mode: NOTIFY from the primary's address (loopback) starts a check.
		"secondary=yes", "allow-notify-from=127.0.0.0/8",
	}
	if err := os.WriteFile(filepath.Join(p.dir, "pdns.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(server, "--config-dir="+p.dir)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = harness.ChildAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start pdns_server (secondary): %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	probe := new(dns.Msg)
	probe.SetQuestion("probe.invalid.", dns.TypeSOA)
	if !harness.Eventually(15*time.Second, 50*time.Millisecond, func() bool {
		_, err := harness.Exchange("udp", p.addr(), probe, 300*time.Millisecond)
		return err == nil
	}) {
		t.Fatalf("pdns_server (secondary) not answering on %s; output:\n%s", p.addr(), p.out)
	}
	return p
}

func (p *pdnsSecondary) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p *pdnsSecondary) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	if p.t.Failed() || harness.Verbose() {
		p.t.Logf("pdns_server (secondary) output:\n%s", p.out)
	}
}

// pdnsControl runs pdns_control on the pdns_server whose control socket is in socketDir
// (bounded by a minute: a rediscover of 100,000 zones takes about half a second).
func pdnsControl(socketDir string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := append([]string{"--socket-dir=" + socketDir}, args...)
	out, err := exec.CommandContext(ctx, harness.LookPath("pdns_control"), a...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pdns_control %v: %v: %s", args, err, out)
	}
	return nil
}

// add makes zone a SLAVE domain of primary and asks pdns_server to retrieve it now.
func (p *pdnsSecondary) add(zone, primary string) error {
	name := strings.TrimSuffix(zone, ".")
	if _, err := p.db.Exec(`INSERT INTO domains (name, master, type) VALUES (?, ?, 'SLAVE')`, name, primary); err != nil {
		return err
	}
	return pdnsControl(p.dir, "retrieve", name)
}

// remove deletes every row of zone.
func (p *pdnsSecondary) remove(zone string) error {
	name := strings.TrimSuffix(zone, ".")
	var id int64
	if err := p.db.QueryRow(`SELECT id FROM domains WHERE name = ?`, name).Scan(&id); err == sql.ErrNoRows {
		return nil
	} else if err != nil {
		return err
	}
	for _, q := range []string{`DELETE FROM records WHERE domain_id = ?`, `DELETE FROM domainmetadata WHERE domain_id = ?`,
		`DELETE FROM domains WHERE id = ?`} {
		if _, err := p.db.Exec(q, id); err != nil {
			return err
		}
	}
	return nil
}

// setIXFR turns the IXFR domain metadata on or off: with it PowerDNS asks for IXFR.
func (p *pdnsSecondary) setIXFR(zone string, on bool) error {
	name := strings.TrimSuffix(zone, ".")
	var id int64
	if err := p.db.QueryRow(`SELECT id FROM domains WHERE name = ?`, name).Scan(&id); err != nil {
		return err
	}
	if _, err := p.db.Exec(`DELETE FROM domainmetadata WHERE domain_id = ? AND kind = 'IXFR'`, id); err != nil {
		return err
	}
	if on {
		_, err := p.db.Exec(`INSERT INTO domainmetadata (domain_id, kind, content) VALUES (?, 'IXFR', '1')`, id)
		return err
	}
	return nil
}

// openDB opens dbname on m for the benchmark's own statements: client-side interpolation,
// so a multi-row INSERT is one round trip, as with the mysql command-line client.
func openDB(t testing.TB, m *harness.MariaDB, dbname string) *sql.DB {
	t.Helper()
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", m.Addr(), dbname
	c.InterpolateParams = true
	c.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

// namedSecondary is the BIND way: a private named (harness.BackendNamed: rndc,
// allow-new-zones) given the zone as `type secondary` with rndc addzone.
type namedSecondary struct {
	n   *harness.BackendNamed
	ixd bool // ixfr-from-differences: a full zone received is turned into a difference
}

func (s namedSecondary) add(zone string, primaryPort int) error {
	name := strings.TrimSuffix(zone, ".")
	extra := ""
	if s.ixd {
		extra = " ixfr-from-differences yes;"
	}
	conf := fmt.Sprintf(`{ type secondary; primaries { 127.0.0.1 port %d; }; file "%s"; check-names ignore;%s };`,
		primaryPort, filepath.Join(s.n.ZoneDir(), name+".db"), extra)
	out, err := s.n.Rndc("addzone", name, conf)
	if err != nil {
		return fmt.Errorf("rndc addzone %s: %v: %s", name, err, out)
	}
	return nil
}

func (s namedSecondary) remove(zone string) error {
	name := strings.TrimSuffix(zone, ".")
	out, err := s.n.Rndc("delzone", "-clean", name)
	if err != nil && !strings.Contains(out, "not found") {
		return fmt.Errorf("rndc delzone %s: %v: %s", name, err, out)
	}
	return nil
}

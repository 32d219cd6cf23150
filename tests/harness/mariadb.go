package harness

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// PDNSSchemaPaths are where Debian's pdns-backend-mysql ships PowerDNS's MySQL schema
// (the first that exists is used).
var PDNSSchemaPaths = []string{
	"/usr/share/pdns-backend-mysql/schema/schema.mysql.sql",
	"/usr/share/doc/pdns-backend-mysql/schema.mysql.sql",
}

// PDNSSchema returns the path of PowerDNS's schema.mysql.sql. A missing schema is a
// missing tool: a failure under CI=true, a skip otherwise.
func PDNSSchema(t testing.TB) string {
	t.Helper()
	for _, p := range PDNSSchemaPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if ci() {
		t.Fatalf("PowerDNS schema not found in %v (install pdns-backend-mysql; CI=true: a missing tool is a failure)", PDNSSchemaPaths)
	}
	t.Skipf("PowerDNS schema not found in %v (install pdns-backend-mysql)", PDNSSchemaPaths)
	return ""
}

// MariaDB is a private mariadbd: a data directory made by mariadb-install-db in a temp
// directory, its own socket, a random 127.0.0.1 port, no grant tables (root without a
// password, loopback only). It is stopped in t.Cleanup.
type MariaDB struct {
	t      testing.TB
	dir    string
	port   int
	binary string

	// extra are more mariadbd options (a Galera node's, galera.go).
	extra []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	out     *Buffer
	done    chan struct{}
	stopped bool // by the test, on purpose
}

// StartMariaDB initialises a data directory and starts mariadbd on it, waiting (30 s at
// most) until it accepts connections.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	server := mustLook(t, "mariadbd")
	install := mustLook(t, "mariadb-install-db")
	m := &MariaDB{t: t, dir: t.TempDir(), port: FreePort(t), binary: server}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Its own tmpdir: bootstraps running at once in a shared /tmp fail now and then
	// ("Unknown table 'mysql.tmp_user_sys'").
	args := append([]string{"--no-defaults", "--datadir=" + m.datadir(), "--tmpdir=" + m.dir,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, m.tuning()...)
	cmd := exec.CommandContext(ctx, install, args...)
	cmd.Dir = m.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	t.Cleanup(func() { m.stop(false) })
	m.Start(t)
	return m
}

// install runs mariadb-install-db on the data directory.
func (m *MariaDB) install(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--no-defaults", "--datadir=" + m.datadir(), "--tmpdir=" + m.dir,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, m.tuning()...)
	cmd := exec.CommandContext(ctx, mustLook(t, "mariadb-install-db"), args...)
	cmd.Dir = m.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
}

func (m *MariaDB) datadir() string { return filepath.Join(m.dir, "data") }

// Socket is the unix socket path.
func (m *MariaDB) Socket() string { return filepath.Join(m.dir, "mysqld.sock") }

// PID is mariadbd's process id (CPU accounting in the benchmarks).
func (m *MariaDB) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd.Process.Pid
}

// Port is the TCP port on 127.0.0.1.
func (m *MariaDB) Port() int { return m.port }

// Addr is 127.0.0.1:port.
func (m *MariaDB) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// Output is what mariadbd logged so far.
func (m *MariaDB) Output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// tuning keeps the server small and fast: these databases are thrown away, so durability
// is not needed. The log file holds a 100,000-record replace comfortably.
func (m *MariaDB) tuning() []string {
	args := []string{"--innodb-buffer-pool-size=128M", "--innodb-log-file-size=64M"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root") // mariadbd refuses to run as root otherwise
	}
	return args
}

// Start (re)starts mariadbd on the same data directory, port and socket.
func (m *MariaDB) Start(t testing.TB) {
	t.Helper()
	args := append([]string{"--no-defaults", "--datadir=" + m.datadir(), "--socket=" + m.Socket(),
		"--port=" + fmt.Sprint(m.port), "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-grant-tables",
		"--pid-file=" + filepath.Join(m.dir, "mysqld.pid"), "--tmpdir=" + m.dir, "--skip-log-bin",
		"--performance-schema=OFF", "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0"}, m.tuning()...)
	args = append(args, m.extra...)
	m.mu.Lock()
	running := m.cmd != nil && !m.exited()
	m.mu.Unlock()
	if running {
		t.Fatalf("mariadbd on %s is running already", m.Addr())
	}
	cmd := exec.Command(m.binary, args...)
	cmd.Dir = m.dir
	out := NewBuffer(256 << 10)
	done := startProcess(t, cmd, out) // not under m.mu: a failure ends the test
	m.mu.Lock()
	m.cmd, m.out, m.done, m.stopped = cmd, out, done, false
	m.mu.Unlock()

	db := m.open(t, "", false)
	defer db.Close()
	var lastErr error
	ready := Eventually(30*time.Second, 50*time.Millisecond, func() bool {
		if m.Exited() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		lastErr = db.PingContext(ctx)
		return lastErr == nil
	})
	if m.Exited() {
		t.Fatalf("mariadbd exited during start-up (%v); output:\n%s", cmd.ProcessState, m.Output())
	}
	if !ready {
		t.Fatalf("mariadbd not accepting connections on %s after 30 s (%v); output:\n%s", m.Addr(), lastErr, m.Output())
	}
}

// Exited reports whether mariadbd is not running.
func (m *MariaDB) Exited() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exited()
}

func (m *MariaDB) exited() bool { return isClosed(m.done) }

// Stop shuts mariadbd down cleanly (SIGTERM): connections are closed and open
// transactions rolled back.
func (m *MariaDB) Stop(t testing.TB) { t.Helper(); m.stop(true) }

// Kill stops mariadbd with SIGKILL, as a crash would: open transactions are rolled back
// by InnoDB's recovery at the next Start.
func (m *MariaDB) Kill(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	m.stopped = true
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if !kill(cmd, done) {
		t.Fatalf("mariadbd on %s still running %v after SIGKILL", m.Addr(), killWait)
	}
}

func (m *MariaDB) stop(onPurpose bool) {
	m.mu.Lock()
	cmd, done, wasStopped := m.cmd, m.done, m.stopped
	if onPurpose {
		m.stopped = true
	}
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		if !onPurpose && !wasStopped {
			m.t.Errorf("mariadbd died before the end of the test: %v; output:\n%s", cmd.ProcessState, m.Output())
		}
		return
	default:
	}
	if terminate(cmd, done, 20*time.Second) {
		m.t.Logf("mariadbd ignored SIGTERM for 20 s; killing it")
	}
	if !onPurpose && (m.t.Failed() || Verbose()) {
		m.t.Logf("mariadbd (%s) output:\n%s", m.Addr(), m.Output())
	}
}

// DSN is the go-sql-driver/mysql data source name of database dbname over TCP.
func (m *MariaDB) DSN(dbname string) string {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", m.Addr(), dbname
	return c.FormatDSN()
}

// open returns a handle on dbname (no database when ""), closed by the caller.
func (m *MariaDB) open(t testing.TB, dbname string, multi bool) *sql.DB {
	t.Helper()
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", m.Addr(), dbname
	c.MultiStatements = multi
	c.Timeout = 5 * time.Second
	// A query never waits longer than this on a server that stopped answering: the test
	// fails with the cause instead of hanging until go test's -timeout.
	c.ReadTimeout, c.WriteTimeout = 2*time.Minute, 2*time.Minute
	c.Logger = mysql.Logger(nopLogger{})
	connector, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(connector)
}

type nopLogger struct{}

func (nopLogger) Print(...any) {}

// DB returns a handle on dbname, closed in t.Cleanup.
func (m *MariaDB) DB(t testing.TB, dbname string) *sql.DB {
	t.Helper()
	db := m.open(t, dbname, false)
	t.Cleanup(func() { db.Close() })
	return db
}

// NewPDNSDatabase creates a database with a fresh random name and loads PowerDNS's
// schema into it; it returns the name.
func (m *MariaDB) NewPDNSDatabase(t testing.TB) string {
	t.Helper()
	schema, err := os.ReadFile(PDNSSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 6)
	rand.Read(suffix)
	name := "pdns_" + hex.EncodeToString(suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := m.open(t, "", false)
	defer root.Close()
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	db := m.open(t, name, true)
	defer db.Close()
	if _, err := db.ExecContext(ctx, string(schema)); err != nil {
		t.Fatalf("load the PowerDNS schema into %s: %v", name, err)
	}
	return name
}

package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// PDNSOptions configures StartPDNS.
type PDNSOptions struct {
	// ZoneCache leaves zone-cache-refresh-interval at PowerDNS's default (300 s), so a
	// new zone is only served after pdns_control rediscover. Otherwise it is 0 (off).
	ZoneCache bool
	// Caches leaves the packet and query caches at PowerDNS's defaults (cache-ttl=20,
	// query-cache-ttl=20, negquery-cache-ttl=60) instead of off.
	Caches bool
	// API turns on PowerDNS's HTTP API (webserver on a random 127.0.0.1 port, a key of
	// its own): APIURL and APIKey. Otherwise both stay off.
	API bool
}

// PDNS is a private pdns_server: launch=gmysql on a database of a private MariaDB,
// every cache at 0 (unless Caches), a random 127.0.0.1 port, its control socket in a temp directory,
// in the foreground without guardian. It is stopped in t.Cleanup.
type PDNS struct {
	t       testing.TB
	dir     string
	port    int
	apiPort int // 0: API off
	cmd     *exec.Cmd
	out     *Buffer
	done    chan struct{}
	mu      sync.Mutex
	stop    bool
}

// StartPDNS writes pdns.conf and starts pdns_server on database dbname of m, waiting
// (10 s at most) until it answers DNS.
func StartPDNS(t testing.TB, m *MariaDB, dbname string, opts PDNSOptions) *PDNS {
	t.Helper()
	server := mustLook(t, "pdns_server")
	p := &PDNS{t: t, dir: t.TempDir(), port: FreePort(t), out: NewBuffer(256 << 10)}
	conf := []string{
		"launch=gmysql",
		"gmysql-host=127.0.0.1",
		fmt.Sprintf("gmysql-port=%d", m.Port()),
		"gmysql-user=root",
		"gmysql-dbname=" + dbname,
		// Debian's shipped gmysql.conf turns this on; it makes PowerDNS read auth and the
		// ENT rows, which is where a wrong row shows.
		"gmysql-dnssec=yes",
		"local-address=127.0.0.1",
		fmt.Sprintf("local-port=%d", p.port),
		"socket-dir=" + p.dir,
		"guardian=no",
		"daemon=no",
		"disable-syslog=yes",
		"write-pid=no",
		"security-poll-suffix=", // no lookups to the Internet
		"receiver-threads=1",
		"distributor-threads=1",
		"loglevel=5",
	}
	if !opts.Caches {
		conf = append(conf, "cache-ttl=0", "query-cache-ttl=0", "negquery-cache-ttl=0")
	}
	if !opts.ZoneCache {
		conf = append(conf, "zone-cache-refresh-interval=0")
	}
	if opts.API {
		p.apiPort = FreePort(t)
		conf = append(conf, "webserver=yes", "api=yes", "api-key="+p.APIKey(),
			"webserver-address=127.0.0.1", fmt.Sprintf("webserver-port=%d", p.apiPort),
			"webserver-allow-from=127.0.0.0/8")
	} else {
		conf = append(conf, "webserver=no", "api=no")
	}
	if err := os.WriteFile(filepath.Join(p.dir, "pdns.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(server, "--config-dir="+p.dir)
	p.cmd.Dir = p.dir
	p.done = startProcess(t, p.cmd, p.out)
	t.Cleanup(p.shutdown)

	probe := new(dns.Msg)
	probe.SetQuestion("probe.invalid.", dns.TypeSOA)
	ready := Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		if p.exited() {
			return true
		}
		_, err := Exchange("udp", p.Addr(), probe, 300*time.Millisecond)
		return err == nil
	})
	if p.exited() {
		t.Fatalf("pdns_server exited during start-up (%v); output:\n%s", p.cmd.ProcessState, p.out)
	}
	if !ready {
		t.Fatalf("pdns_server not answering on %s after 10 s; output:\n%s", p.Addr(), p.out)
	}
	return p
}

// Addr is pdns_server's DNS address (UDP and TCP).
func (p *PDNS) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// APIURL is the base of PowerDNS's HTTP API, server localhost (API set).
func (p *PDNS) APIURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/api/v1/servers/localhost", p.apiPort)
}

// APIKey is the key the API wants in X-API-Key.
func (p *PDNS) APIKey() string { return "dnsagent-test-" + filepath.Base(p.dir) }

// PID is pdns_server's process id (CPU accounting in the benchmarks).
func (p *PDNS) PID() int { return p.cmd.Process.Pid }

// SocketDir holds pdns.controlsocket (pdns_control --socket-dir).
func (p *PDNS) SocketDir() string { return p.dir }

// ConfigDir holds pdns.conf (pdnsutil --config-dir).
func (p *PDNS) ConfigDir() string { return p.dir }

// Output is what pdns_server logged so far.
func (p *PDNS) Output() string { return p.out.String() }

// Query asks pdns_server over TCP (no truncation to hide records) and fails the test if
// it does not answer.
func (p *PDNS) Query(t testing.TB, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, err := Exchange("tcp", p.Addr(), m, 2*time.Second)
	if err != nil {
		t.Fatalf("query %s %s at pdns_server %s: %v", name, dns.TypeToString[qtype], p.Addr(), err)
	}
	return r
}

func (p *PDNS) exited() bool { return isClosed(p.done) }

func (p *PDNS) shutdown() {
	p.mu.Lock()
	if p.stop {
		p.mu.Unlock()
		return
	}
	p.stop = true
	p.mu.Unlock()
	if p.exited() {
		p.t.Errorf("pdns_server died before the end of the test: %v; output:\n%s", p.cmd.ProcessState, p.out)
		return
	}
	terminate(p.cmd, p.done, 5*time.Second)
	if p.t.Failed() || Verbose() {
		p.t.Logf("pdns_server (%s) output:\n%s", p.Addr(), p.out)
	}
}

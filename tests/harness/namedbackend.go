package harness

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// UpdateKeyName is the TSIG key a BackendNamed grants updates to (update_key of the bind9
// backend); its secret is BackendNamed.UpdateSecret.
const UpdateKeyName = "dnsagent-update"

// BackendOptions configures StartBackendNamed.
type BackendOptions struct {
	// StaticZones are zones defined in named.conf itself (name -> zone-file text), with
	// their files outside the zone directory: zones the agent must not treat as its own.
	StaticZones map[string]string
}

// BackendNamed is a private named acting as the server the bind9 backend drives: zones
// are added and removed at run time (allow-new-zones), it has its own rndc key and
// control channel, and a TSIG key for dynamic updates. Everything is on loopback, in a
// temp directory, stopped in t.Cleanup.
type BackendNamed struct {
	t            testing.TB
	dir          string
	port         int
	ctlPort      int
	rndcSecret   string
	UpdateSecret string // base64 secret of UpdateKeyName (hmac-sha256)
	opts         BackendOptions
	out          *Buffer

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool
}

// StartBackendNamed starts named on random loopback ports and waits until it answers
// queries and rndc.
func StartBackendNamed(t testing.TB, opts BackendOptions) *BackendNamed {
	t.Helper()
	mustLook(t, "named")
	mustLook(t, "rndc")
	n := &BackendNamed{
		t:            t,
		dir:          t.TempDir(),
		port:         FreePort(t),
		ctlPort:      FreePort(t),
		rndcSecret:   randomSecret(t),
		UpdateSecret: randomSecret(t),
		opts:         opts,
		out:          NewBuffer(4 << 20),
	}
	if err := os.Mkdir(n.ZoneDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.writeFiles(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	n.start(t)
	return n
}

func randomSecret(t testing.TB) string {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(key)
}

// Addr is named's DNS address, 127.0.0.1:port (UDP and TCP): query_destination.
func (n *BackendNamed) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

// ControlPort is the port of named's rndc control channel (on 127.0.0.1).
func (n *BackendNamed) ControlPort() int { return n.ctlPort }

// Dir is named's working directory.
func (n *BackendNamed) Dir() string { return n.dir }

// ZoneDir is the directory for the agent's zone files (zone_file_path); named may write
// journals there.
func (n *BackendNamed) ZoneDir() string { return filepath.Join(n.dir, "zones") }

// RNDCKeyFile holds the control channel's key in the format `rndc -k` reads.
func (n *BackendNamed) RNDCKeyFile() string { return filepath.Join(n.dir, "rndc.key") }

// Output is what named logged so far; take len(Output()) as a mark and look at what came
// after it to see what one operation made named do.
func (n *BackendNamed) Output() string { return n.out.String() }

// WaitLog waits (timeout at most) until named has logged text after the mark since (a
// length of Output taken earlier). named writes a log line after it acts and answers, so
// a test looks for the line rather than reading the log once.
func (n *BackendNamed) WaitLog(since int, text string, timeout time.Duration) bool {
	return Eventually(timeout, 10*time.Millisecond, func() bool {
		return strings.Contains(n.out.String()[since:], text)
	})
}

func (n *BackendNamed) writeFiles() error {
	key := fmt.Sprintf("key \"rndc-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", n.rndcSecret)
	if err := os.WriteFile(n.RNDCKeyFile(), []byte(key), 0o600); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(key)
	fmt.Fprintf(&b, "key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", UpdateKeyName, n.UpdateSecret)
	fmt.Fprintf(&b, "controls {\n\tinet 127.0.0.1 port %d allow { 127.0.0.1; } keys { \"rndc-key\"; };\n};\n", n.ctlPort)
	fmt.Fprintf(&b, "options {\n")
	fmt.Fprintf(&b, "\tdirectory \"%s\";\n", n.dir)
	fmt.Fprintf(&b, "\tlisten-on port %d { 127.0.0.1; };\n\tlisten-on-v6 { none; };\n", n.port)
	for _, f := range [][2]string{{"pid-file", "named.pid"}, {"session-keyfile", "session.key"},
		{"dump-file", "named_dump.db"}, {"statistics-file", "named.stats"}} {
		fmt.Fprintf(&b, "\t%s \"%s\";\n", f[0], filepath.Join(n.dir, f[1]))
	}
	fmt.Fprintf(&b, "\tmanaged-keys-directory \"%s\";\n", n.dir)
	b.WriteString("\trecursion no;\n\tallow-query { any; };\n\tallow-transfer { any; };\n")
	b.WriteString("\tdnssec-validation no;\n\tnotify no;\n\tallow-new-zones yes;\n};\n")
	names := make([]string, 0, len(n.opts.StaticZones))
	for name := range n.opts.StaticZones {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		origin := strings.TrimSuffix(fqdn(name), ".")
		path := filepath.Join(n.dir, "static."+origin)
		if err := os.WriteFile(path, []byte(n.opts.StaticZones[name]), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&b, "zone \"%s\" {\n\ttype primary;\n\tfile \"%s\";\n};\n", origin, path)
	}
	return os.WriteFile(filepath.Join(n.dir, "named.conf"), []byte(b.String()), 0o644)
}

func (n *BackendNamed) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(LookPath("named"), "-g", "-n", "2", "-c", filepath.Join(n.dir, "named.conf"))
	cmd.Dir = n.dir
	done := startProcess(t, cmd, n.out)
	n.mu.Lock()
	n.cmd, n.done, n.stopped = cmd, done, false
	n.mu.Unlock()

	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	ready := Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		if exited() {
			return true
		}
		m := new(dns.Msg)
		m.SetQuestion(".", dns.TypeSOA)
		if _, err := Exchange("udp", n.Addr(), m, 300*time.Millisecond); err != nil {
			return false
		}
		_, err := n.Rndc("status")
		return err == nil
	})
	if exited() {
		t.Fatalf("backend named exited during start-up (%v); output:\n%s", cmd.ProcessState, n.out)
	}
	if !ready {
		t.Fatalf("backend named not answering DNS on %s and rndc on port %d after 10 s; output:\n%s", n.Addr(), n.ctlPort, n.out)
	}
}

// Rndc runs rndc against this named and returns its combined output.
func (n *BackendNamed) Rndc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := append([]string{"-k", n.RNDCKeyFile(), "-s", "127.0.0.1", "-p", fmt.Sprint(n.ctlPort)}, args...)
	out, err := exec.CommandContext(ctx, LookPath("rndc"), a...).CombinedOutput()
	return string(out), err
}

// Query sends one query over TCP (as dig +tcp +norec would) and fails the test if there is
// no answer.
func (n *BackendNamed) Query(t testing.TB, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	r, err := Exchange("tcp", n.Addr(), m, DefaultTimeout)
	if err != nil {
		t.Fatalf("query %s %s at backend named %s: %v", name, dns.TypeToString[qtype], n.Addr(), err)
	}
	return r
}

// Serial returns the serial named serves for zone with AA set, or an error saying why not.
func (n *BackendNamed) Serial(zone string) (uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	m.RecursionDesired = false
	r, err := Exchange("tcp", n.Addr(), m, DefaultTimeout)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return 0, fmt.Errorf("rcode %s, aa %v", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("no SOA in the answer")
}

// AXFRSet transfers zone from named and returns its canonical record set (closing SOA
// dropped), to compare with a primary's.
func (n *BackendNamed) AXFRSet(zone string) ([]string, error) {
	rrs, err := AXFR(n.Addr(), zone)
	if err != nil {
		return nil, err
	}
	return AXFRSet(rrs), nil
}

// Restart stops named and starts it again on the same ports and directory: zones added
// with rndc addzone come back from named's NZD database.
func (n *BackendNamed) Restart(t testing.TB) {
	t.Helper()
	n.stop()
	n.start(t)
}

// Stop ends named (SIGTERM, SIGKILL after 5 s), e.g. to see how the agent copes with it
// being down.
func (n *BackendNamed) Stop() { n.stop() }

func (n *BackendNamed) stop() {
	n.mu.Lock()
	if n.stopped || n.cmd == nil {
		n.mu.Unlock()
		return
	}
	n.stopped = true
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	select {
	case <-done:
		n.t.Errorf("backend named had exited by itself: %v", cmd.ProcessState)
		n.t.Logf("backend named output:\n%s", n.out)
		return
	default:
	}
	terminate(cmd, done, 5*time.Second)
	if n.t.Failed() || Verbose() {
		n.t.Logf("backend named (%s) output:\n%s", n.Addr(), n.out)
	}
}

// StopAgent stops an agent before the end of the test (SIGTERM, SIGKILL after 5 s), so a
// test can start another on the same configuration: an agent restart.
func StopAgent(a *Agent) { a.stop() }

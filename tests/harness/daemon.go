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

// ServerOptions configures StartKnot and StartNSD: the zones served and whom to notify.
type ServerOptions struct {
	// Zones maps a zone name to the text of its zone file, written into the server's
	// directory (SetZone rewrites it).
	Zones map[string]string
	// Files maps a zone name to an existing zone file loaded as it is, e.g. the agent's
	// file to check that a server accepts it.
	Files map[string]string
	// Notify lists "ip:port" targets sent a NOTIFY for every zone on each new version.
	Notify []string
	// TSIG, when set, is the only key transfers are served to; unset, anyone on loopback.
	TSIG *TSIGKey
}

// Server is a private knotd or nsd: its own directory, a random loopback port, its own
// control socket. It is stopped in t.Cleanup.
type Server struct {
	t      testing.TB
	name   string // "knotd" or "nsd"
	dir    string
	port   int
	files  map[string]string // zone name (FQDN, lower case) -> zone file
	tsig   *TSIGKey
	reload func(zone string) (string, error)
	cmd    *exec.Cmd
	out    *Buffer
	done   chan struct{}
	mu     sync.Mutex
	stop   bool
}

// newServer writes the zone files of opts into a new directory and allocates a port.
func newServer(t testing.TB, name string, opts ServerOptions) *Server {
	t.Helper()
	s := &Server{t: t, name: name, dir: t.TempDir(), port: FreePort(t), files: map[string]string{}, tsig: opts.TSIG,
		out: NewBuffer(256 << 10)}
	for zone, text := range opts.Zones {
		s.files[fqdn(zone)] = filepath.Join(s.dir, "db."+strings.TrimSuffix(fqdn(zone), "."))
		if err := writeNewer(s.files[fqdn(zone)], text); err != nil {
			t.Fatal(err)
		}
	}
	for zone, path := range opts.Files {
		s.files[fqdn(zone)] = path
	}
	return s
}

// fqdn is the harness's canonical form of a zone name: lowercase, fully qualified. It is
// written here again, not taken from the agent, so the tests check the agent's rule.
func fqdn(zone string) string { return dns.Fqdn(strings.ToLower(zone)) }

// start runs the server and waits (10 s at most) until it serves the SOA of every zone.
func (s *Server) start(bin string, args ...string) {
	t := s.t
	t.Helper()
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = s.dir
	s.done = startProcess(t, s.cmd, s.out)
	t.Cleanup(s.stopNow)
	ready := Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		if s.exited() {
			return true
		}
		for zone := range s.files {
			if _, err := QuerySerial(s.Addr(), zone); err != nil {
				return false
			}
		}
		return true
	})
	if s.exited() {
		t.Fatalf("%s exited during start-up (%v); output:\n%s", s.name, s.cmd.ProcessState, s.out)
	}
	if !ready {
		t.Fatalf("%s does not serve every zone on %s after 10 s; output:\n%s", s.name, s.Addr(), s.out)
	}
}

// Addr is the server's DNS address, 127.0.0.1:port (UDP and TCP).
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Name is the server program's name: "knotd" or "nsd".
func (s *Server) Name() string { return s.name }

// Output is what the server logged so far.
func (s *Server) Output() string { return s.out.String() }

// AXFR transfers zone from the server (signed with its TSIG key if it has one), closing
// SOA included.
func (s *Server) AXFR(t testing.TB, zone string) []dns.RR {
	t.Helper()
	rrs, err := AXFRSigned(s.Addr(), zone, s.tsig)
	if err != nil {
		t.Fatalf("AXFR %s from %s: %v\n%s output:\n%s", zone, s.name, err, s.name, s.out)
	}
	return rrs
}

// SetZone rewrites the zone file of zone, has the server reload it through its control
// socket and waits (10 s at most) until it serves the new serial. With Notify set the
// server then sends its own NOTIFY.
func (s *Server) SetZone(t testing.TB, zone, text string) {
	t.Helper()
	path, ok := s.files[fqdn(zone)]
	serial, hasSOA := SerialOf(text, zone)
	if !ok || !hasSOA {
		t.Fatalf("SetZone %s: zone unknown to %s (%v) or no SOA in the text (%v)", zone, s.name, ok, hasSOA)
	}
	if err := writeNewer(path, text); err != nil {
		t.Fatal(err)
	}
	if out, err := s.reload(fqdn(zone)); err != nil {
		t.Fatalf("%s reload %s: %v: %s", s.name, zone, err, out)
	}
	var got uint32
	if !Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		got, _ = QuerySerial(s.Addr(), zone)
		return got == serial
	}) {
		t.Fatalf("%s still serves serial %d of %s, want %d; output:\n%s", s.name, got, zone, serial, s.out)
	}
}

// control runs a control tool (knotc, nsd-control) for at most 10 s.
func control(bin string, args ...string) (string, error) {
	return RunTool(10*time.Second, bin, args...)
}

// writeNewer writes a file atomically with an mtime after the one it replaces: knotd and
// nsd skip a reload when the file's mtime did not change, which a rewrite within the same
// clock tick would otherwise not do.
func writeNewer(path, text string) error {
	mt := time.Now()
	if st, err := os.Stat(path); err == nil && !mt.After(st.ModTime()) {
		mt = st.ModTime().Add(time.Second)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *Server) exited() bool { return isClosed(s.done) }

// stopNow ends the server: SIGTERM, SIGKILL to its process group after 5 s.
func (s *Server) stopNow() {
	s.mu.Lock()
	if s.stop {
		s.mu.Unlock()
		return
	}
	s.stop = true
	s.mu.Unlock()
	if !s.exited() {
		terminate(s.cmd, s.done, 5*time.Second)
	}
	if s.t.Failed() || Verbose() {
		s.t.Logf("%s (%s) output:\n%s", s.name, s.Addr(), s.out)
	}
}

package harness

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// PrimaryOptions configures StartPrimaryWith.
type PrimaryOptions struct {
	// Zones maps a zone name to the text of its zone file.
	Zones map[string]string
	// AlsoNotify lists "ip:port" targets named sends NOTIFY to (notify explicit).
	AlsoNotify []string
	// IXFRFromDifferences makes named compute differences on reload and serve real IXFR;
	// without it an IXFR request gets the whole zone (AXFR-style reply).
	IXFRFromDifferences bool
	// ExtraOptions is added verbatim inside options { }.
	ExtraOptions string
	// TransferKeys, when set, are defined in named.conf and are the only way to transfer
	// the zones: allow-transfer lists these keys instead of any.
	TransferKeys []TSIGKey
	// SharedZones are all served from one file holding SharedZoneText, written with names
	// relative to the origin ("@", "www"): tens of thousands of zones load in seconds this
	// way. StartPrimaryWith then waits (90 s at most) until named has loaded every zone.
	SharedZones    []string
	SharedZoneText string
	// QueryLog makes named log every query it receives, timed to the millisecond
	// (QueryTimes reads them).
	QueryLog bool
	// ZoneOptions maps a zone name to statements added verbatim inside its zone { }, e.g.
	// "dnssec-policy NAME; inline-signing yes;" (with the policy in ExtraConfig).
	ZoneOptions map[string]string
	// ExtraConfig is added verbatim at the top level of named.conf (dnssec-policy blocks).
	ExtraConfig string
}

// TSIGKey is a TSIG key as named.conf writes it.
type TSIGKey struct {
	Name      string // without the trailing dot
	Algorithm string // hmac-sha1, hmac-sha256, hmac-sha512...
	Secret    string // base64
}

// NewTSIGKey returns a key with a random 32-byte secret.
func NewTSIGKey(t testing.TB, name, algorithm string) TSIGKey {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return TSIGKey{Name: name, Algorithm: algorithm, Secret: base64.StdEncoding.EncodeToString(b)}
}

// Section is the agent's [tsig:NAME] section for the key.
func (k TSIGKey) Section() string {
	return fmt.Sprintf("[tsig:%s]\nalgorithm = %s\nsecret = %s\n", k.Name, k.Algorithm, k.Secret)
}

// Primary is a private named acting as the primary the agent transfers from.
type Primary struct {
	t       testing.TB
	dir     string
	port    int
	ctlPort int
	secret  string
	opts    PrimaryOptions
	cmd     *exec.Cmd
	out     *Buffer
	done    chan struct{}
	mu      sync.Mutex
	mtimes  map[string]time.Time
	stopped bool
}

// StartPrimary starts named serving zones (name -> zone-file text) on a random loopback
// port, with its own rndc key and control channel, and waits until it answers.
func StartPrimary(t testing.TB, zones map[string]string) *Primary {
	t.Helper()
	return StartPrimaryWith(t, PrimaryOptions{Zones: zones})
}

// StartPrimaryWith is StartPrimary with options.
func StartPrimaryWith(t testing.TB, opts PrimaryOptions) *Primary {
	t.Helper()
	named := mustLook(t, "named")
	mustLook(t, "rndc")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	p := &Primary{
		t:       t,
		dir:     t.TempDir(),
		port:    FreePort(t),
		ctlPort: FreePort(t),
		secret:  base64.StdEncoding.EncodeToString(key),
		opts:    opts,
		out:     NewBuffer(256 << 10),
		mtimes:  map[string]time.Time{},
	}
	if p.opts.Zones == nil {
		p.opts.Zones = map[string]string{}
	}
	for name, text := range p.opts.Zones {
		if err := p.writeZone(name, text); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.opts.SharedZones) > 0 {
		if err := os.WriteFile(filepath.Join(p.dir, "db.shared"), []byte(p.opts.SharedZoneText), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.writeConf(); err != nil {
		t.Fatal(err)
	}
	rndcConf := fmt.Sprintf("key \"rndc-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\noptions {\n\tdefault-key \"rndc-key\";\n\tdefault-server 127.0.0.1;\n\tdefault-port %d;\n};\n", p.secret, p.ctlPort)
	if err := os.WriteFile(filepath.Join(p.dir, "rndc.conf"), []byte(rndcConf), 0o600); err != nil {
		t.Fatal(err)
	}

	foreground := "-g"
	if opts.QueryLog {
		foreground = "-f"
	}
	p.cmd = exec.Command(named, foreground, "-n", "2", "-c", filepath.Join(p.dir, "named.conf"))
	p.cmd.Dir = p.dir
	p.done = startProcess(t, p.cmd, p.out)
	t.Cleanup(p.stop)

	// Ready: every zone's SOA (or any answer for the root) over TCP, within 10 s. One
	// zone answering says little of the others: named loads them in parallel, and on a
	// slow host a CREATE sent then met SERVFAIL for a zone not loaded yet.
	pending := map[string]bool{}
	for name := range p.opts.Zones {
		pending[dns.Fqdn(name)] = true
	}
	if len(pending) == 0 {
		pending["."] = true
	}
	wait := 10 * time.Second
	if len(p.opts.SharedZones) > 0 {
		wait = 90 * time.Second
	}
	ready := Eventually(wait, 50*time.Millisecond, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		if len(p.opts.SharedZones) > 0 && !strings.Contains(p.out.String(), "all zones loaded") {
			return false
		}
		// One connection for all: one each would leave as many sockets in TIME_WAIT,
		// which tests of the agent's connection reuse count.
		c := dns.Client{Net: "tcp", Timeout: 500 * time.Millisecond}
		conn, err := c.Dial(p.Addr())
		if err != nil {
			return false
		}
		defer conn.Close()
		for name := range pending {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeSOA)
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil {
				return false
			}
			if name == "." || (r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0) {
				delete(pending, name)
			}
		}
		return len(pending) == 0
	})
	select {
	case <-p.done:
		t.Fatalf("named exited during start-up (%v); output:\n%s", p.cmd.ProcessState, p.out)
	default:
	}
	if !ready {
		t.Fatalf("named not answering SOA for %d zones (%v) on %s after %v; output:\n%s",
			len(pending), slices.Collect(maps.Keys(pending)), p.Addr(), wait, p.out)
	}
	return p
}

// Addr is the primary's DNS address, 127.0.0.1:port (UDP and TCP).
func (p *Primary) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// Port is the primary's DNS port.
func (p *Primary) Port() int { return p.port }

// Dir is the primary's working directory.
func (p *Primary) Dir() string { return p.dir }

// Output returns what named logged so far.
func (p *Primary) Output() string { return p.out.String() }

func (p *Primary) zonePath(name string) string {
	return filepath.Join(p.dir, primaryFileName(name))
}

// primaryFileName is db.<zone>, or db.<hash> for a name too long for a file name with
// named's ".jnl" after it.
func primaryFileName(name string) string {
	name = strings.TrimSuffix(fqdn(name), ".")
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(name))
		name = hex.EncodeToString(sum[:8])
	}
	return "db." + name
}

// writeZone writes the zone file atomically and gives it an mtime after the previous one,
// so that named's "up to date" check on reload never skips a rewrite done within the same
// clock tick.
func (p *Primary) writeZone(name, text string) error {
	path := p.zonePath(name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	p.mu.Lock()
	mt := time.Now().Add(time.Second)
	if prev, ok := p.mtimes[name]; ok && !mt.After(prev) {
		mt = prev.Add(time.Second)
	}
	p.mtimes[name] = mt
	p.mu.Unlock()
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (p *Primary) writeConf() error {
	var b strings.Builder
	fmt.Fprintf(&b, "key \"rndc-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", p.secret)
	for _, k := range p.opts.TransferKeys {
		fmt.Fprintf(&b, "key %q {\n\talgorithm %s;\n\tsecret %q;\n};\n", k.Name, k.Algorithm, k.Secret)
	}
	fmt.Fprintf(&b, "controls {\n\tinet 127.0.0.1 port %d allow { 127.0.0.1; } keys { \"rndc-key\"; };\n};\n", p.ctlPort)
	if p.opts.QueryLog {
		// named runs with -f then (-g would send every category to stderr): the rest of
		// its log still goes to stderr.
		fmt.Fprintf(&b, "logging {\n\tchannel queries { file %q; print-time yes; };\n\tcategory queries { queries; };\n"+
			"\tchannel out { stderr; print-time yes; };\n\tcategory default { out; };\n};\n", filepath.Join(p.dir, "queries.log"))
	}
	fmt.Fprintf(&b, "options {\n")
	fmt.Fprintf(&b, "\tdirectory \"%s\";\n", p.dir)
	fmt.Fprintf(&b, "\tlisten-on port %d { 127.0.0.1; };\n", p.port)
	fmt.Fprintf(&b, "\tlisten-on-v6 { none; };\n")
	fmt.Fprintf(&b, "\tpid-file \"%s\";\n", filepath.Join(p.dir, "named.pid"))
	fmt.Fprintf(&b, "\tsession-keyfile \"%s\";\n", filepath.Join(p.dir, "session.key"))
	fmt.Fprintf(&b, "\tmanaged-keys-directory \"%s\";\n", p.dir)
	fmt.Fprintf(&b, "\tdump-file \"%s\";\n", filepath.Join(p.dir, "named_dump.db"))
	fmt.Fprintf(&b, "\tstatistics-file \"%s\";\n", filepath.Join(p.dir, "named.stats"))
	fmt.Fprintf(&b, "\trecursion no;\n\tallow-query { any; };\n")
	if len(p.opts.TransferKeys) == 0 {
		fmt.Fprintf(&b, "\tallow-transfer { any; };\n")
	} else {
		fmt.Fprintf(&b, "\tallow-transfer {")
		for _, k := range p.opts.TransferKeys {
			fmt.Fprintf(&b, " key %q;", k.Name)
		}
		fmt.Fprintf(&b, " };\n")
	}
	fmt.Fprintf(&b, "\tdnssec-validation no;\n\tnotify explicit;\n\tnotify-delay 0;\n")
	fmt.Fprintf(&b, "\tcheck-names primary ignore;\n")
	if len(p.opts.AlsoNotify) > 0 {
		fmt.Fprintf(&b, "\talso-notify {")
		for _, a := range p.opts.AlsoNotify {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				return fmt.Errorf("also-notify %q: %w", a, err)
			}
			fmt.Fprintf(&b, " %s port %s;", host, port)
		}
		fmt.Fprintf(&b, " };\n")
	}
	if p.opts.IXFRFromDifferences {
		fmt.Fprintf(&b, "\tixfr-from-differences yes;\n")
	}
	if p.opts.QueryLog {
		fmt.Fprintf(&b, "\tquerylog yes;\n")
	}
	if p.opts.ExtraOptions != "" {
		fmt.Fprintf(&b, "\t%s\n", p.opts.ExtraOptions)
	}
	fmt.Fprintf(&b, "};\n")
	b.WriteString(p.opts.ExtraConfig + "\n")
	names := make([]string, 0, len(p.opts.Zones))
	for n := range p.opts.Zones {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "zone \"%s\" {\n\ttype primary;\n\tfile \"%s\";\n\t%s\n};\n", strings.TrimSuffix(dns.Fqdn(n), "."), p.zonePath(n), p.opts.ZoneOptions[n])
	}
	for _, n := range p.opts.SharedZones {
		fmt.Fprintf(&b, "zone \"%s\" { type primary; file \"db.shared\"; };\n", strings.TrimSuffix(dns.Fqdn(n), "."))
	}
	return os.WriteFile(filepath.Join(p.dir, "named.conf"), []byte(b.String()), 0o644)
}

// QueryTimes returns when named received each query of type qtype ("SOA", "AXFR"...) at
// or after since, from its query log (PrimaryOptions.QueryLog), in the order logged.
func (p *Primary) QueryTimes(qtype string, since time.Time) ([]time.Time, error) {
	data, err := os.ReadFile(filepath.Join(p.dir, "queries.log"))
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, line := range strings.Split(string(data), "\n") {
		// 04-Dec-2026 19:35:59.886 client @0x... 127.0.0.1#41234 (z1.test): query: z1.test IN SOA -E(0)T (127.0.0.1)
		if !strings.Contains(line, " IN "+qtype+" ") || len(line) < 24 {
			continue
		}
		at, err := time.ParseInLocation("02-Jan-2006 15:04:05.000", line[:24], time.Local)
		if err != nil {
			return nil, fmt.Errorf("query log line %q: %w", line, err)
		}
		if !at.Before(since) {
			out = append(out, at)
		}
	}
	return out, nil
}

// Rndc runs rndc against this named and returns its output.
func (p *Primary) Rndc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := append([]string{"-c", filepath.Join(p.dir, "rndc.conf")}, args...)
	out, err := exec.CommandContext(ctx, LookPath("rndc"), a...).CombinedOutput()
	return string(out), err
}

// SetZone rewrites the zone file of name, runs `rndc reload NAME` and waits (10 s at most)
// until named serves the new serial. The zone must have been given at start.
func (p *Primary) SetZone(t testing.TB, name, text string) {
	t.Helper()
	p.mu.Lock()
	_, known := p.opts.Zones[name]
	p.mu.Unlock()
	if !known {
		t.Fatalf("SetZone: zone %q was not configured at start", name)
	}
	serial, ok := SerialOf(text, name)
	if !ok {
		t.Fatalf("SetZone %s: no SOA in the new text", name)
	}
	p.ReloadZone(t, name, text)
	var last uint32
	var lastErr error
	okServed := Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		last, lastErr = p.serial(name)
		return lastErr == nil && last == serial
	})
	if !okServed {
		t.Fatalf("SetZone %s: named still serves serial %d (err %v), want %d\nnamed output:\n%s", name, last, lastErr, serial, p.out)
	}
}

// SetAlsoNotify changes the also-notify list and runs `rndc reconfig`.
func (p *Primary) SetAlsoNotify(t testing.TB, targets ...string) {
	t.Helper()
	p.mu.Lock()
	p.opts.AlsoNotify = targets
	err := p.writeConf()
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.Rndc("reconfig"); err != nil {
		t.Fatalf("rndc reconfig: %v: %s", err, out)
	}
}

func (p *Primary) serial(zone string) (uint32, error) {
	return QuerySerial(p.Addr(), zone)
}

// SOASerial returns the serial named serves for zone (asked over TCP).
func (p *Primary) SOASerial(t testing.TB, zone string) uint32 {
	t.Helper()
	s, err := p.serial(zone)
	if err != nil {
		t.Fatalf("SOA %s from %s: %v", zone, p.Addr(), err)
	}
	return s
}

// AXFR transfers zone from the primary (as dig axfr would) and returns every record,
// including the opening and closing SOA.
func (p *Primary) AXFR(t testing.TB, zone string) []dns.RR {
	t.Helper()
	rrs, err := AXFR(p.Addr(), zone)
	if err != nil {
		t.Fatalf("AXFR %s from %s: %v", zone, p.Addr(), err)
	}
	return rrs
}

// QuerySerial asks server for zone's SOA over TCP and returns the serial.
func QuerySerial(server, zone string) (uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	c := dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("no SOA in the answer")
}

// AXFR transfers zone from server over TCP with miekg/dns, bounded in time.
func AXFR(server, zone string) ([]dns.RR, error) { return AXFRSigned(server, zone, nil) }

// AXFRSigned is AXFR signed with key (none if nil); miekg/dns checks every reply's TSIG.
func AXFRSigned(server, zone string, key *TSIGKey) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetAxfr(dns.Fqdn(zone))
	tr := &dns.Transfer{DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 2 * time.Second}
	if key != nil {
		name := dns.Fqdn(key.Name)
		m.SetTsig(name, dns.Fqdn(key.Algorithm), 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{name: key.Secret}
	}
	ch, err := tr.In(m, server)
	if err != nil {
		return nil, err
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			return nil, env.Error
		}
		rrs = append(rrs, env.RR...)
	}
	if len(rrs) < 2 {
		return nil, fmt.Errorf("AXFR of %s: %d records", zone, len(rrs))
	}
	return rrs, nil
}

// stop ends named: SIGTERM, then SIGKILL after 5 s.
func (p *Primary) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.done:
		if p.t.Failed() {
			p.t.Logf("named (%s) had exited: %v; output:\n%s", p.Addr(), p.cmd.ProcessState, p.out)
		}
		return
	default:
	}
	terminate(p.cmd, p.done, 5*time.Second)
	if p.t.Failed() || Verbose() {
		p.t.Logf("named (%s) output (start-up banner left out):\n%s", p.Addr(), trimBanner(p.out.String()))
	}
}

// trimBanner drops named's version and build banner, everything before it reads its
// configuration (errors at start-up are printed in full elsewhere).
func trimBanner(s string) string {
	if i := strings.Index(s, "loading configuration from"); i >= 0 {
		if j := strings.LastIndexByte(s[:i], '\n'); j >= 0 {
			return s[j+1:]
		}
	}
	return s
}

// Package tests holds dnsagent's end-to-end tests: each one starts its own private named
// (and, where needed, a fault-injecting proxy) and its own agent process on fresh loopback
// ports, and talks to them over the wire. Tests are named after the acceptance points
// (TestAT02... = acceptance test 2), so `go test ./tests -run AT07` selects one.
package tests

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

func TestMain(m *testing.M) { harness.RunMain(m) }

// stmtTimeout bounds each statement or backend call a test makes itself against MariaDB:
// one that stopped answering fails the test with the statement's error instead of hanging
// the suite until go test's -timeout (the driver's own read timeout is minutes).
const stmtTimeout = 30 * time.Second

// within returns what ch gives within d, or fails the test saying what did not happen.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
		panic("unreachable")
	}
}

// replaceMidway runs replace in the background and returns once midway reports that it is
// in its middle; the test fails if midway says it never was, or if replace ends first.
// The returned channel gets replace's result.
func replaceMidway(t *testing.T, midway <-chan bool, what string, replace func() error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- replace() }()
	select {
	case ok := <-midway:
		if !ok {
			t.Fatalf("%s: never seen", what)
		}
	case err := <-done:
		t.Fatalf("Replace ended (%v) before %s", err, what)
	}
	return done
}

// stmtCtx is a context that ends after stmtTimeout, or with the test.
func stmtCtx(t *testing.T) context.Context { return boundedCtx(t, stmtTimeout) }

// boundedCtx is a context that ends after d, or with the test: for a test's series of
// backend calls, where t.Context() alone would let one hang until go test's -timeout.
func boundedCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

const zone = "example.com."

// bogusOrigin parses agent-written files: a file that relied on an implicit origin
// instead of absolute names would then show up as foreign records.
const bogusOrigin = "origin-must-not-matter.invalid."

// env is one primary serving zone and one agent using it as its master.
type env struct {
	p     *harness.Primary
	a     *harness.Agent
	proxy *harness.Proxy // nil unless asked for
	z     harness.Zone
}

type envOpts struct {
	records    int
	ixfr       bool // primary computes IXFR differences
	proxy      bool // agent's master is a proxy in front of the primary
	extra      []string
	agent      harness.AgentConfig // Masters filled in when empty
	allowLocal bool                // AllowNotify = 127.0.0.1 when empty
}

func setup(t *testing.T, o envOpts) *env {
	t.Helper()
	harness.Require(t, "named", "rndc")
	if o.records == 0 {
		o.records = 50
	}
	z := harness.NewZone(zone, 2024010101, o.records)
	z.Extra = o.extra
	e := &env{z: z}
	e.p = harness.StartPrimaryWith(t, harness.PrimaryOptions{
		Zones:               map[string]string{zone: z.Text()},
		IXFRFromDifferences: o.ixfr,
	})
	master := e.p.Addr()
	if o.proxy {
		e.proxy = harness.StartProxy(t, e.p.Addr())
		master = e.proxy.Addr()
	}
	cfg := o.agent
	if cfg.Masters == "" {
		cfg.Masters = master
	}
	if cfg.AllowNotify == "" && o.allowLocal {
		cfg.AllowNotify = "127.0.0.1"
	}
	e.a = harness.StartAgent(t, cfg)
	return e
}

// udp sends req to addr over UDP and fails the test if no reply comes within timeout.
func udp(t *testing.T, addr string, req []byte, timeout time.Duration) []byte {
	t.Helper()
	r, err := harness.ExchangeUDP(addr, req, timeout)
	if err != nil {
		t.Fatalf("UDP exchange %x with %s: %v", req, addr, err)
	}
	return r
}

func tcp(t *testing.T, addr string, req []byte, timeout time.Duration) []byte {
	t.Helper()
	r, err := harness.ExchangeTCP(addr, req, timeout)
	if err != nil {
		t.Fatalf("TCP exchange %x with %s: %v", req, addr, err)
	}
	return r
}

// expectBytes compares a whole reply with the expected bytes.
func expectBytes(t *testing.T, what string, got, want []byte) bool {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: reply\n  got  %s\n  want %x", what, harness.DescribeReply(got), want)
		return false
	}
	return true
}

// create sends a Designate CREATE over UDP (as the worker does, bounded well above
// create_timeout) and expects NOERROR+AA with the question echoed.
func create(t *testing.T, a *harness.Agent, id uint16) {
	t.Helper()
	req := harness.CreateMsg(id, zone)
	expectBytes(t, "CREATE", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
}

// notify sends a NOTIFY (flags 0x2000) and expects the exact accept reply 0xa400.
func notify(t *testing.T, a *harness.Agent, id uint16) {
	t.Helper()
	req := harness.NotifyMsg(id, zone, false)
	expectBytes(t, "NOTIFY", udp(t, a.Addr(), req, 3*time.Second), harness.Reply(req, 0xa400))
}

// primarySet is what the primary serves now, canonical, closing SOA dropped.
func primarySet(t *testing.T, p *harness.Primary) []string {
	t.Helper()
	return harness.AXFRSet(p.AXFR(t, zone))
}

// fileSet reads the agent's zone file. It is parsed with a bogus origin so that only
// absolute names compare equal; a file needing the zone's origin is reported as such.
func fileSet(a *harness.Agent) ([]string, error) {
	return harness.ZoneFileSet(a.ZoneFile(zone), bogusOrigin)
}

// diffFile describes how the agent's file differs from want ("" if it matches).
func diffFile(a *harness.Agent, want []string) string {
	got, err := fileSet(a)
	if err != nil {
		return err.Error()
	}
	d := harness.DiffSets(want, got, 8)
	if d != "" {
		if withOrigin, err := harness.ZoneFileSet(a.ZoneFile(zone), zone); err == nil && harness.DiffSets(want, withOrigin, 1) == "" {
			return "the file has the right records but uses names relative to an implicit origin (SPEC §4: absolute names)"
		}
	}
	return d
}

// waitFile polls until the agent's file holds exactly want; it returns how long that took
// and the last difference ("" on success).
func waitFile(a *harness.Agent, want []string, timeout time.Duration) (time.Duration, string) {
	start := time.Now()
	var last string
	harness.Eventually(timeout, 20*time.Millisecond, func() bool {
		last = diffFile(a, want)
		return last == ""
	})
	return time.Since(start), last
}

// dirEntries lists the names in dir, sorted.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// fileMode checks the permission bits the agent gives zone files (SPEC §4: 0644 default).
func fileMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Errorf("stat %s: %v", path, err)
		return
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("%s has mode %v, want 0644 (SPEC §4 default, so the DNS server can read it)", filepath.Base(path), st.Mode().Perm())
	}
}

// stillFor checks cond holds at every poll during d (for "nothing happens" checks there is
// no event to wait for; the duration is the only bound).
func stillFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// msgString renders a reply without its id and with every section sorted, to compare
// answers (named rotates the order of RRsets between answers).
func msgString(m *dns.Msg) string {
	c := m.Copy()
	c.Id = 0
	for _, sec := range [][]dns.RR{c.Answer, c.Ns, c.Extra} {
		sort.Slice(sec, func(i, j int) bool { return sec[i].String() < sec[j].String() })
	}
	return c.String()
}

func unpack(t *testing.T, what string, raw []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		t.Fatalf("%s: cannot unpack reply %x: %v", what, raw, err)
	}
	return m
}

func contains(s, sub string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(sub)) }

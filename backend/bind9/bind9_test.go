package bind9

// Unit tests with a fake rndc: argument building, validation, error propagation. What
// named does with the commands is tested against a real named in *_named_test.go.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/tsigkey"
)

// fakeRNDC answers commands from a script keyed by the command word and records every
// call.
type fakeRNDC struct {
	mu     sync.Mutex
	calls  [][]string
	answer func(args []string) (string, error)
}

func (f *fakeRNDC) Run(_ context.Context, args ...string) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, args)
	f.mu.Unlock()
	if f.answer == nil {
		return "", nil
	}
	return f.answer(args)
}

func (f *fakeRNDC) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cmds []string
	for _, c := range f.calls {
		cmds = append(cmds, c[0])
	}
	return cmds
}

// rndcFailure is what the real runner returns when rndc exits non-zero.
func rndcFailure(args []string, output string) error {
	return &RNDCError{Args: args, Output: output, Err: errors.New("exit status 1")}
}

var notFound = func(args []string) (string, error) {
	return "", rndcFailure(args, "rndc: '"+args[0]+"' failed: not found\nno matching zone '"+args[1]+"' in any view")
}

func testConfig(t *testing.T) Config {
	return Config{
		RNDCHost: "127.0.0.1", RNDCPort: 953, RNDCTimeout: time.Second, RNDCBinary: "rndc",
		ZoneFilePath: t.TempDir(), FileMode: 0o644,
		// Nothing listens there: a test that reaches a DNS query fails fast.
		QueryDestination: "127.0.0.1:1",
		UpdateMode:       ModeReload,
	}
}

func newTestBackend(t *testing.T, cfg Config, r RNDC) *Backend {
	t.Helper()
	b, err := New(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigFrom(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "rndc.key")
	if err := os.WriteFile(keyFile, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(`
[agent:bind9]
rndc_host = 192.0.2.1
rndc_port = 8953
rndc_key_file = ` + keyFile + `
rndc_timeout = 2.5
zone_file_path = /var/lib/bind/dnsagent
file_mode = 0640
query_destination = 127.0.0.1:53
view = internal
zone_config = also-notify { 192.0.2.7; }; allow-transfer { none; };
update_mode = update
update_key = agent

[tsig:agent]
algorithm = hmac-sha512
secret = c2VjcmV0
`)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section("agent:bind9")
	cfg := ConfigFrom(s)
	if err := f.Err(); err != nil {
		t.Fatalf("file errors: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := Config{
		RNDCHost: "192.0.2.1", RNDCPort: 8953, RNDCKeyFile: keyFile, RNDCTimeout: 2500 * time.Millisecond,
		RNDCBinary: "rndc", RNDCChannel: true, ZoneFilePath: "/var/lib/bind/dnsagent", FileMode: 0o640,
		QueryDestination: "127.0.0.1:53", View: "internal",
		ZoneConfig: "also-notify { 192.0.2.7; }; allow-transfer { none; };", UpdateMode: ModeUpdate,
		UpdateKey: &tsigkey.Key{Name: "agent.", Algorithm: dns.HmacSHA512, Secret: "c2VjcmV0"},
	}
	if cfg.UpdateKey == nil || *cfg.UpdateKey != *want.UpdateKey {
		t.Errorf("UpdateKey = %+v, want %+v", cfg.UpdateKey, want.UpdateKey)
	}
	cfg.UpdateKey, want.UpdateKey = nil, nil
	if cfg != want {
		t.Errorf("ConfigFrom =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	f, _ := config.Parse("[agent:bind9]\nquery_destination = 127.0.0.1:53\n")
	cfg := ConfigFrom(f.Section("agent:bind9"))
	if cfg.RNDCHost != "127.0.0.1" || cfg.RNDCPort != 953 || cfg.RNDCTimeout != 10*time.Second ||
		cfg.FileMode != 0o644 || cfg.UpdateMode != ModeReload || cfg.RNDCBinary != "rndc" || cfg.ZoneFilePath != DefaultZoneFilePath {
		t.Errorf("defaults: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	key := &tsigkey.Key{Name: "agent.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}
	tests := []struct {
		option string
		change func(*Config)
	}{
		{"query_destination", func(c *Config) { c.QueryDestination = "" }},
		{"query_destination", func(c *Config) { c.QueryDestination = "127.0.0.1" }},
		{"query_destination", func(c *Config) { c.QueryDestination = "127.0.0.1:99999" }},
		{"rndc_host", func(c *Config) { c.RNDCHost = "-c/etc/passwd" }},
		{"rndc_host", func(c *Config) { c.RNDCHost = "a b" }},
		{"rndc_port", func(c *Config) { c.RNDCPort = 70000 }},
		{"rndc_timeout", func(c *Config) { c.RNDCTimeout = 0 }},
		{"rndc_key_file", func(c *Config) { c.RNDCKeyFile = "/nonexistent/rndc.key" }},
		{"zone_file_path", func(c *Config) { c.ZoneFilePath = "relative/zones" }},
		{"zone_file_path", func(c *Config) { c.ZoneFilePath = `/var/"quoted"` }},
		{"file_group", func(c *Config) { c.FileGroup = "no-such-group-for-sure" }},
		{"view", func(c *Config) { c.View = "in ternal" }},
		{"view", func(c *Config) { c.View = `x"; };` }},
		{"zone_config", func(c *Config) { c.ZoneConfig = "allow-transfer { none; }; }; zone evil { type primary;" }},
		{"zone_config", func(c *Config) { c.ZoneConfig = "also-notify { 192.0.2.1; }" }},
		{"zone_config", func(c *Config) { c.ZoneConfig = `allow-transfer { key "x; };` }},
		{"zone_config", func(c *Config) { c.ZoneConfig = "notify yes;\nzone x {};" }},
		{"update_mode", func(c *Config) { c.UpdateMode = "dynamic" }},
		{"update_key", func(c *Config) { c.UpdateMode, c.UpdateKey = ModeUpdate, nil }},
		{"update_key", func(c *Config) { c.UpdateMode, c.UpdateKey = ModeUpdate, &tsigkey.Key{Name: `a"b.`} }},
	}
	for _, tt := range tests {
		cfg := testConfig(t)
		cfg.UpdateKey = key
		tt.change(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.option+":") {
			t.Errorf("%+v: Validate() = %v, want an error about %s", cfg, err, tt.option)
		}
	}
	good := testConfig(t)
	good.UpdateMode, good.UpdateKey = ModeUpdate, key
	good.ZoneConfig = `allow-transfer { key "x}"; }; also-notify { 192.0.2.1; };`
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

func TestAddzoneArgs(t *testing.T) {
	cfg := testConfig(t)
	dir := cfg.ZoneFilePath
	b := newTestBackend(t, cfg, &fakeRNDC{})
	want := []string{"addzone", "example.com",
		`{ type primary; file "` + dir + `/example.com.zone"; check-names ignore; check-integrity no; masterfile-format text; };`}
	if got := b.addzoneArgs("example.com."); !slices.Equal(got, want) {
		t.Errorf("reload mode:\n got %q\nwant %q", got, want)
	}

	cfg.UpdateMode = ModeUpdate
	cfg.UpdateKey = &tsigkey.Key{Name: "agent-key.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}
	cfg.View = "internal"
	cfg.ZoneConfig = "also-notify { 192.0.2.1; };"
	b = newTestBackend(t, cfg, &fakeRNDC{})
	want = []string{"addzone", "foo_bar.example", "IN", "internal",
		`{ type primary; file "` + dir + `/foo_bar.example.zone"; check-names ignore; check-integrity no; masterfile-format text;` +
			` update-policy { grant "agent-key" zonesub ANY; }; also-notify { 192.0.2.1; }; };`}
	if got := b.addzoneArgs("foo_bar.example."); !slices.Equal(got, want) {
		t.Errorf("update mode with view:\n got %q\nwant %q", got, want)
	}
	if got := b.zoneArgs("delzone", "foo_bar.example.", "-clean"); !slices.Equal(got, []string{"delzone", "-clean", "foo_bar.example", "IN", "internal"}) {
		t.Errorf("delzone args %q", got)
	}
}

func TestFileOf(t *testing.T) {
	tests := map[string]string{
		`zone "example.com" { type primary; file "/var/lib/bind/dnsagent/example.com.zone"; };`:                           "/var/lib/bind/dnsagent/example.com.zone",
		`zone "x" { type primary; check-names ignore; file "/a b/x.zone"; update-policy { grant "k" zonesub "ANY"; }; };`: "/a b/x.zone",
		`zone "x" { type primary; file "/odd\"name"; };`:                                                                  `/odd"name`,
		`zone "x" { type secondary; primaries { 192.0.2.1; }; };`:                                                         "",
		`zone "x" { type primary; profile "x"; file "db.x"; };`:                                                           "db.x",
	}
	for out, want := range tests {
		if got := fileOf(out); got != want {
			t.Errorf("fileOf(%q) = %q, want %q", out, got, want)
		}
	}
}

func TestOurs(t *testing.T) {
	cfg := testConfig(t)
	b := newTestBackend(t, cfg, &fakeRNDC{})
	dir := cfg.ZoneFilePath
	tests := map[string]bool{
		dir + "/example.com.zone":       true,
		dir + "/sub/x.zone":             true,
		dir + "/../elsewhere/x.zone":    false,
		dir + "-other/example.com.zone": false,
		"example.com.zone":              false, // relative to named's directory, not ours
		"":                              false,
	}
	for file, want := range tests {
		if got := b.ours(file); got != want {
			t.Errorf("ours(%q) = %v, want %v", file, got, want)
		}
	}
}

// A hostile name is refused before anything reaches rndc, the directory or named.
func TestHostileNamesNeverReachRNDC(t *testing.T) {
	r := &fakeRNDC{}
	cfg := testConfig(t)
	b := newTestBackend(t, cfg, r)
	ctx := t.Context()
	for _, name := range backendtest.HostileNames {
		cs := &backend.ChangeSet{Zone: name, Steps: []backend.Step{{Old: &dns.SOA{}, New: &dns.SOA{}}}}
		errs := []error{
			b.Create(ctx, name, backendtest.Stream(backendtest.Zone("example.com.", 1, 1))),
			b.Replace(ctx, name, backendtest.Stream(backendtest.Zone("example.com.", 1, 1))),
			b.Delete(ctx, name),
			b.Apply(ctx, name, cs),
		}
		_, serialErr := b.Serial(ctx, name)
		for i, err := range append(errs, serialErr) {
			if err == nil || !strings.Contains(err.Error(), "zone name") {
				t.Errorf("%q: operation %d: %v, want a zone-name error", name, i, err)
			}
		}
	}
	if len(r.calls) != 0 {
		t.Errorf("rndc ran for hostile names: %q", r.calls)
	}
	if entries, _ := os.ReadDir(cfg.ZoneFilePath); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
}

// When addzone fails, Create fails with rndc's message and leaves no file.
func TestCreateAddzoneFailureLeavesNothing(t *testing.T) {
	r := &fakeRNDC{answer: func(args []string) (string, error) {
		switch args[0] {
		case "showzone":
			return notFound(args)
		case "addzone":
			return "", rndcFailure(args, "rndc: 'addzone' failed: permission denied")
		}
		t.Errorf("unexpected rndc %q", args)
		return "", nil
	}}
	cfg := testConfig(t)
	b := newTestBackend(t, cfg, r)
	err := b.Create(t.Context(), "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 1, 10)))
	if err == nil || !strings.Contains(err.Error(), "rndc: 'addzone' failed: permission denied") {
		t.Fatalf("Create: %v, want rndc's message", err)
	}
	if entries, _ := os.ReadDir(cfg.ZoneFilePath); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
	// No file of ours was there, so named cannot have had the zone as ours: no showzone.
	if got := r.commands(); !slices.Equal(got, []string{"addzone"}) {
		t.Errorf("rndc commands %q", got)
	}
}

// rndc failing altogether (named down, wrong key) fails every operation with rndc's
// message, and nothing is written.
func TestRNDCUnreachable(t *testing.T) {
	r := &fakeRNDC{answer: func(args []string) (string, error) {
		return "", rndcFailure(args, "rndc: connect failed: 127.0.0.1#953: connection refused")
	}}
	cfg := testConfig(t)
	b := newTestBackend(t, cfg, r)
	ctx := t.Context()
	src := backendtest.Stream(backendtest.Zone("example.com.", 1, 10))
	for op, err := range map[string]error{
		"create":  b.Create(ctx, "example.com.", src),
		"replace": b.Replace(ctx, "example.com.", src),
		"delete":  b.Delete(ctx, "example.com."),
	} {
		if err == nil || !strings.Contains(err.Error(), "connection refused") || errors.Is(err, backend.ErrNotFound) {
			t.Errorf("%s: %v, want rndc's message and not ErrNotFound", op, err)
		}
	}
	if entries, _ := os.ReadDir(cfg.ZoneFilePath); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
}

// A zone whose file lies outside zone_file_path is not ours: no create, replace, apply or
// delete, and no rndc command beyond showzone (and the addzone named refuses).
func TestNotOwned(t *testing.T) {
	r := &fakeRNDC{answer: func(args []string) (string, error) {
		switch args[0] {
		case "showzone":
			return `zone "example.com" { type primary; file "/etc/bind/db.example.com"; };`, nil
		case "addzone":
			return "", rndcFailure(args, "already exists")
		}
		t.Errorf("unexpected rndc %q", args)
		return "", nil
	}}
	b := newTestBackend(t, testConfig(t), r)
	ctx := t.Context()
	zone := "example.com."
	src := backendtest.Stream(backendtest.Zone(zone, 1, 10))
	soa := backendtest.Zone(zone, 1, 0)[0].(*dns.SOA)
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa, New: soa}}}
	for op, err := range map[string]error{
		"create":  b.Create(ctx, zone, src),
		"replace": b.Replace(ctx, zone, src),
		"apply":   b.Apply(ctx, zone, cs),
		"delete":  b.Delete(ctx, zone),
	} {
		if !errors.Is(err, backend.ErrNotOwned) || !strings.Contains(err.Error(), "/etc/bind/db.example.com") {
			t.Errorf("%s: %v, want ErrNotOwned naming the file", op, err)
		}
	}
}

func TestDeleteMissing(t *testing.T) {
	r := &fakeRNDC{answer: notFound}
	b := newTestBackend(t, testConfig(t), r)
	if err := b.Delete(t.Context(), "example.com."); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Delete: %v, want ErrNotFound", err)
	}
	if got := r.commands(); !slices.Equal(got, []string{"showzone"}) {
		t.Errorf("rndc commands %q, want only showzone", got)
	}
}

func TestZonesListsOnlyZoneFiles(t *testing.T) {
	cfg := testConfig(t)
	b := newTestBackend(t, cfg, &fakeRNDC{})
	for _, name := range []string{"b.test.zone", "a.test.zone", "a.test.zone.jnl", ".a.test.zone~123", "tmp-XYZ", "Upper.test.zone", "x..zone", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(cfg.ZoneFilePath, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Zones(t.Context())
	if err != nil || !slices.Equal(got, []string{"a.test.", "b.test."}) {
		t.Errorf("Zones() = %v, %v", got, err)
	}
}

func TestCheckChangeSet(t *testing.T) {
	zone := "example.com."
	soa := func(serial uint32) *dns.SOA {
		s := backendtest.Zone(zone, serial, 0)[0].(*dns.SOA)
		return s
	}
	a := func(name string) dns.RR {
		rr, _ := dns.NewRR(name + " 300 IN A 192.0.2.1")
		return rr
	}
	tests := []struct {
		name         string
		cs           *backend.ChangeSet
		inconsistent bool
	}{
		{"no steps", &backend.ChangeSet{Zone: zone}, false},
		{"steps do not connect", &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(1), New: soa(2)}, {Old: soa(3), New: soa(4)}}}, true},
		{"record outside", &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(1), New: soa(2), Added: []dns.RR{a("www.example.org.")}}}}, false},
		{"SOA of another zone", &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: backendtest.Zone("other.", 1, 0)[0].(*dns.SOA), New: soa(2)}}}, false},
		{"SOA among records", &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(1), New: soa(2), Deleted: []dns.RR{soa(1)}}}}, false},
	}
	for _, tt := range tests {
		err := checkChangeSet(zone, tt.cs)
		if err == nil || errors.Is(err, backend.ErrInconsistent) != tt.inconsistent {
			t.Errorf("%s: %v (inconsistent: want %v)", tt.name, err, tt.inconsistent)
		}
	}
	good := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{Old: soa(1), New: soa(2), Added: []dns.RR{a("foo_bar.example.com.")}}}}
	if err := checkChangeSet(zone, good); err != nil {
		t.Errorf("good change set: %v", err)
	}
}

// The real runner passes arguments to rndc verbatim (no shell), and its errors carry
// what rndc printed, on one line.
func TestExecPassesArgumentsAndOutput(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "rndc")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\necho \"rndc: 'addzone' failed: bad zone\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.RNDCBinary, cfg.RNDCPort = script, 8953
	r, err := NewExec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(t.Context(), "addzone", "x", `{ file "a b"; $(id); };`)
	var re *RNDCError
	if !errors.As(err, &re) {
		t.Fatalf("Run: %v, want an RNDCError", err)
	}
	for _, want := range []string{"[-s] [127.0.0.1] [-p] [8953] [addzone] [x] [{ file \"a b\"; $(id); };]", "failed: bad zone"} {
		if !strings.Contains(out, want) || !strings.Contains(err.Error(), want) {
			t.Errorf("output %q / error %q lacks %q", out, err, want)
		}
	}

	slow := filepath.Join(dir, "slow-rndc")
	os.WriteFile(slow, []byte("#!/bin/sh\nexec sleep 10\n"), 0o755)
	cfg.RNDCBinary, cfg.RNDCTimeout = slow, 100*time.Millisecond
	r, _ = NewExec(cfg)
	start := time.Now()
	if _, err := r.Run(t.Context(), "status"); err == nil || !strings.Contains(err.Error(), "rndc_timeout") {
		t.Errorf("slow rndc: %v, want a timeout error", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("slow rndc was waited for %v", took)
	}

	cfg.RNDCBinary = "no-such-rndc-binary"
	if _, err := NewExec(cfg); err == nil || !strings.Contains(err.Error(), "rndc_binary") {
		t.Errorf("missing binary: %v", err)
	}
}

// fakeNamed answers every SOA query on UDP with a reply built by answer; the fake DNS
// seam beside the fake rndc.
func fakeNamed(t *testing.T, answer func(q *dns.Msg) *dns.Msg) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		w.WriteMsg(answer(q))
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// A zone named does not serve for a moment (SERVFAIL while it starts and loads its zones,
// or a non-authoritative answer) is not gone: Serial is a transient error unless rndc
// showzone says named does not have the zone, or its file is gone.
func TestSerialUnservedIsNotFoundOnlyByShowzone(t *testing.T) {
	servfail := func(q *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(q, dns.RcodeServerFailure) }
	nonAuth := func(q *dns.Msg) *dns.Msg { return new(dns.Msg).SetReply(q) }
	refused := func(q *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(q, dns.RcodeRefused) }
	// showzone answers are built from the zone file named would load.
	ours := func(file string, _ []string) (string, error) {
		return `zone "example.com" { type primary; file "` + file + `"; };`, nil
	}
	theirs := func(string, []string) (string, error) {
		return `zone "example.com" { type primary; file "/etc/bind/db.example.com"; };`, nil
	}
	down := func(_ string, args []string) (string, error) {
		return "", rndcFailure(args, "rndc: connect failed: 127.0.0.1#953: connection refused")
	}
	missing := func(_ string, args []string) (string, error) { return notFound(args) }
	tests := []struct {
		name     string
		answer   func(*dns.Msg) *dns.Msg
		showzone func(file string, args []string) (string, error)
		file     bool  // the zone file exists
		want     error // nil: transient, neither ErrNotFound nor ErrNotOwned
		says     string
	}{
		{"SERVFAIL, ours", servfail, ours, true, nil, "answers SERVFAIL"},
		{"non-authoritative, ours", nonAuth, ours, true, nil, "non-authoritative"},
		{"SERVFAIL, rndc down", servfail, down, true, nil, "connection refused"},
		{"REFUSED, no such zone", refused, missing, false, backend.ErrNotFound, "does not have the zone"},
		{"SERVFAIL, file gone", servfail, ours, false, backend.ErrNotFound, "is gone"},
		{"SERVFAIL, someone else's", servfail, theirs, true, backend.ErrNotOwned, "/etc/bind/db.example.com"},
	}
	for _, tt := range tests {
		cfg := testConfig(t)
		cfg.QueryDestination = fakeNamed(t, tt.answer)
		file := filepath.Join(cfg.ZoneFilePath, "example.com.zone")
		if tt.file {
			if err := os.WriteFile(file, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r := &fakeRNDC{answer: func(args []string) (string, error) {
			if args[0] != "showzone" {
				t.Errorf("%s: unexpected rndc %q", tt.name, args)
				return "", nil
			}
			return tt.showzone(file, args)
		}}
		b := newTestBackend(t, cfg, r)
		_, err := b.Serial(t.Context(), "example.com.")
		switch {
		case err == nil:
			t.Errorf("%s: Serial succeeded", tt.name)
		case tt.want == nil && (errors.Is(err, backend.ErrNotFound) || errors.Is(err, backend.ErrNotOwned)):
			t.Errorf("%s: Serial: %v, want a transient error (the zone is named's, not gone)", tt.name, err)
		case tt.want != nil && !errors.Is(err, tt.want):
			t.Errorf("%s: Serial: %v, want %v", tt.name, err, tt.want)
		case !strings.Contains(err.Error(), tt.says):
			t.Errorf("%s: Serial: %v, want it to say %q", tt.name, err, tt.says)
		}
		if got := r.commands(); !slices.Equal(got, []string{"showzone"}) {
			t.Errorf("%s: rndc commands %q, want showzone alone", tt.name, got)
		}
	}
}

// ctxRNDC is fakeRNDC that also records whether each command's context was still live,
// as the real runner fails at once on a context that has ended.
type ctxRNDC struct {
	fakeRNDC
	dead []string // the commands run with an ended context
}

func (r *ctxRNDC) Run(ctx context.Context, args ...string) (string, error) {
	if ctx.Err() != nil {
		r.mu.Lock()
		r.dead = append(r.dead, args[0])
		r.mu.Unlock()
		return "", ctx.Err()
	}
	return r.fakeRNDC.Run(ctx, args...)
}

// A dynamic zone's load ended (a DELETE, the shutdown) just after its new file was
// renamed into place still thaws the zone: left frozen, named would refuse updates for
// good and serve the old version over the new file.
func TestLoadThawsWhenEndedAfterRename(t *testing.T) {
	const zone = "example.com."
	cfg := testConfig(t)
	cfg.QueryDestination = fakeNamed(t, func(q *dns.Msg) *dns.Msg {
		r := new(dns.Msg).SetReply(q)
		r.Authoritative = true
		soa, _ := dns.NewRR(zone + " 3600 IN SOA ns.example.com. host.example.com. 5 3600 600 86400 60")
		r.Answer = append(r.Answer, soa)
		return r
	})
	r := &ctxRNDC{}
	b := newTestBackend(t, cfg, r)
	soa := zone + " 3600 IN SOA ns.example.com. host.example.com. %d 3600 600 86400 60\n"
	if err := os.WriteFile(b.dir.Path(zone), fmt.Appendf(nil, soa, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	produce := func(context.Context) (string, error) {
		tmp := filepath.Join(cfg.ZoneFilePath, ".tmp-new")
		err := os.WriteFile(tmp, fmt.Appendf(nil, soa, 6), 0o644)
		cancel() // the job ends as the file goes into place
		return tmp, err
	}
	if err := b.load(ctx, zone, produce, 6); err == nil {
		t.Fatal("the load succeeded although its context ended")
	}
	if got := r.commands(); !slices.Equal(got, []string{"freeze", "thaw"}) || len(r.dead) != 0 {
		t.Errorf("rndc commands %q, and %q with an ended context; want freeze and thaw, both run", got, r.dead)
	}
	if serial, err := b.dir.Serial(zone); err != nil || serial != 6 {
		t.Errorf("zone file serial %d, %v; want the new file, 6", serial, err)
	}
}

// The [backend:agent:bind9] section of a designate.conf, copied as it is: options written
// with dashes, as oslo.config allows, and query-destination a bare IP (Designate's
// resolver asks port 53).
func TestConfigFromDesignateSection(t *testing.T) {
	dir := t.TempDir()
	keyFile, confFile := filepath.Join(dir, "rndc.key"), filepath.Join(dir, "rndc.conf")
	for _, p := range []string{keyFile, confFile} {
		if err := os.WriteFile(p, []byte("key"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := config.Parse(`
[backend:agent:bind9]
rndc-host = 127.0.0.1
rndc-port = 953
rndc-config-file = ` + confFile + `
rndc-key-file = ` + keyFile + `
zone-file-path = ` + dir + `
query-destination = 127.0.0.1
`)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigFrom(f.Section("agent:bind9", "backend:agent:bind9"))
	if err := f.Err(); err != nil {
		t.Fatalf("file errors: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.QueryDestination != "127.0.0.1:53" || cfg.RNDCConfigFile != confFile || cfg.RNDCKeyFile != keyFile || cfg.ZoneFilePath != dir {
		t.Errorf("config %+v; want query_destination 127.0.0.1:53 and the files as written", cfg)
	}
	for dest, want := range map[string]string{"::1": "[::1]:53", "[::1]": "[::1]:53", "ns1.example": "ns1.example:53", "[::1]:5353": "[::1]:5353"} {
		if got := withDefaultPort(dest); got != want {
			t.Errorf("query_destination %s: %s, want %s", dest, got, want)
		}
	}
}

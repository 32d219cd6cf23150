package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// mentions requires out to name every word (case-insensitively).
func mentions(t *testing.T, what, out string, words ...string) {
	t.Helper()
	for _, w := range words {
		if !contains(out, w) {
			t.Errorf("%s: the message does not mention %q:\n%s", what, w, out)
		}
	}
}

// Acceptance test 11: listening on a non-loopback address with an empty allow_notify is
// refused, by the daemon and by check-config, with a message about allow_notify.
func TestAT11OpenListenNeedsAllowNotify(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{
		fmt.Sprintf("0.0.0.0:%d", harness.FreePort(t)),
		fmt.Sprintf("127.0.0.1:%d, 192.0.2.10:%d", harness.FreePort(t), harness.FreePort(t)),
	} {
		cfg := harness.AgentConfig{Listen: listen, Masters: "127.0.0.1:53", AllowNotify: ""}
		code, out := harness.CheckConfig(t, cfg)
		if code == 0 {
			t.Errorf("check-config with listen = %s and no allow_notify: exit 0, want non-zero; output:\n%s", listen, out)
		}
		mentions(t, "check-config, listen = "+listen, out, "allow_notify")
	}

	// The daemon itself must not start (bounded: if it does start, it is killed).
	cfg := harness.AgentConfig{Listen: fmt.Sprintf("0.0.0.0:%d", harness.FreePort(t)), Masters: "127.0.0.1:53"}
	path := harness.WriteAgentConfig(t, &cfg)
	code, out := harness.RunAgentCommand(t, 10*time.Second, "--config", path)
	switch {
	case code == -1:
		t.Errorf("the agent started on 0.0.0.0 with no allow_notify (still running after 10 s); output:\n%s", out)
	case code == 0:
		t.Errorf("the agent exited 0 with listen on 0.0.0.0 and no allow_notify; output:\n%s", out)
	}
	mentions(t, "daemon start with listen = 0.0.0.0", out, "allow_notify")

	// Controls: loopback-only with an empty list, and an explicit `any`, are valid.
	for _, c := range []harness.AgentConfig{
		{Masters: "127.0.0.1:53", AllowNotify: ""},
		{Listen: fmt.Sprintf("0.0.0.0:%d", harness.FreePort(t)), Masters: "127.0.0.1:53", AllowNotify: "any"},
		{Listen: fmt.Sprintf("0.0.0.0:%d", harness.FreePort(t)), Masters: "127.0.0.1:53", AllowNotify: "192.0.2.0/24"},
	} {
		if code, out := harness.CheckConfig(t, c); code != 0 {
			t.Errorf("check-config rejects a valid configuration (exit %d):\n%s\noutput:\n%s", code, c.Text(), out)
		}
	}
}

// Acceptance test 9: check-config rejects an unknown backend_driver and a master that is
// not an IP address, naming the section and the option; the daemon refuses them too.
func TestAT09CheckConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   harness.AgentConfig
		words []string
	}{
		{"backend_driver = nosuch", harness.AgentConfig{Masters: "127.0.0.1:53", AllowNotify: "127.0.0.1", BackendDriver: "nosuch"}, []string{"service:agent", "backend_driver", "nosuch"}},
		{"masters = not-an-ip:53", harness.AgentConfig{Masters: "not-an-ip:53", AllowNotify: "127.0.0.1"}, []string{"service:agent", "masters", "not-an-ip"}},
		{"masters without a port", harness.AgentConfig{Masters: "127.0.0.1:53, 192.0.2.1:", AllowNotify: "127.0.0.1"}, []string{"service:agent", "masters"}},
		{"allow_notify = not-a-cidr/99", harness.AgentConfig{Masters: "127.0.0.1:53", AllowNotify: "10.0.0.0/99"}, []string{"service:agent", "allow_notify"}},
	}
	for _, c := range cases {
		code, out := harness.CheckConfig(t, c.cfg)
		if code == 0 {
			t.Errorf("check-config with %s: exit 0, want non-zero; output:\n%s", c.name, out)
		}
		mentions(t, "check-config with "+c.name, out, c.words...)
	}

	// The daemon refuses to start with them (bounded; killed if it does start).
	for _, c := range cases[:2] {
		cfg := c.cfg
		path := harness.WriteAgentConfig(t, &cfg)
		code, out := harness.RunAgentCommand(t, 10*time.Second, "--config", path)
		if code == 0 || code == -1 {
			t.Errorf("the agent with %s: exit %d (-1: still running after 10 s), want a non-zero exit; output:\n%s", c.name, code, out)
		}
		mentions(t, "daemon with "+c.name, out, c.words[1])
	}

	// Control: the same configuration with good values passes, IPv6 masters included.
	good := harness.AgentConfig{Masters: "127.0.0.1:53, [::1]:5354", AllowNotify: "127.0.0.1, 192.0.2.0/24"}
	if code, out := harness.CheckConfig(t, good); code != 0 {
		t.Errorf("check-config rejects a valid configuration (exit %d); output:\n%s", code, out)
	}
}

// The command line: --version and --help succeed and print something useful.
func TestCLIVersionAndHelp(t *testing.T) {
	t.Parallel()
	code, out := harness.RunAgentCommand(t, 10*time.Second, "--version")
	if code != 0 || !strings.Contains(out, "dnsagent") {
		t.Errorf("--version: exit %d, output %q", code, out)
	}
	code, out = harness.RunAgentCommand(t, 10*time.Second, "--help")
	if code != 0 || !strings.Contains(out, "check-config") {
		t.Errorf("--help: exit %d, output %q", code, out)
	}
}

// An address the agent cannot bind (its DNS listener's, most often another server on the
// port, or its HTTP one's) stops it at start with exit 1 and one error line that names
// the address and the cause, not a Go stack trace that reads as a crash.
func TestStartFailsWithOneLine(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for option, cfg := range map[string]harness.AgentConfig{
		"listen":         {Masters: "127.0.0.1:5354", Listen: addr},
		"metrics_listen": {Masters: "127.0.0.1:5354", MetricsListen: addr},
	} {
		path := harness.WriteAgentConfig(t, &cfg)
		code, out := harness.RunAgentCommand(t, 20*time.Second, "--config", path)
		if code != 1 || !strings.Contains(out, addr) || !strings.Contains(out, "address already in use") ||
			strings.Contains(out, "\n\t/") { // a stack trace's lines: function, then "\t/path/file.go:line"
			t.Errorf("the agent with %s on a port in use: exit %d, output:\n%s\nwant exit 1 and a line naming the address and the cause, without a stack trace",
				option, code, out)
		}
	}
}

// Acceptance test 9, every component at once: a configuration holding one mistake for
// each component that owns options (service, transfer engine, TSIG keys, catalogs,
// control API, each backend, the relay destination, an unknown option) makes check-config
// print exactly one line per mistake, each naming section, option and problem. A key named
// by two options, a master that cannot be read (so none is left), and bind9's
// query_destination (bind9 owns it; the relay uses it) are each still one mistake.
func TestAT09CheckConfigEachMistakeOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := `[service:agent]
listen = 127.0.0.1:` + fmt.Sprint(harness.FreePort(t)) + `
masters = not-an-ip:53
backend_driver = file, bind9, powerdns, memory
log_format = xml
log_level = loud
retry_min = 0
catalog_zones = catalog.example.
catalog_state_file = ` + filepath.Join(dir, "catalog.state") + `
catalog_max_removal = 2
control_listen = 127.0.0.1:` + fmt.Sprint(harness.FreePort(t)) + `
masters_tsig_key = broken
tsig_keys = broken
diff_index_dir = ` + filepath.Join(dir, "index") + `
lissten = 127.0.0.1:53

[tsig:broken]
algorithm = hmac-md5
secret = c2VjcmV0

[agent:file]
zone_file_path = ` + filepath.Join(dir, "zones") + `
file_group = no-such-group-for-sure

[agent:bind9]
query_destination = 127.0.0.1:99999
zone_file_path = ` + filepath.Join(dir, "bind") + `

[agent:powerdns]
zone_kind = SLAVE
port = 70000

[agent:memory]
query_destination = nowhere:x
`
	want := []string{ // "[section] option", one line each
		"[service:agent] masters",             // service: cannot be read, so none is left
		"[service:agent] log_format",          // service
		"[service:agent] log_level",           // service (the logger would refuse it at start)
		"[service:agent] retry_min",           // transfer engine (transfer.Config.Validate)
		"[service:agent] catalog_max_removal", // catalog consumer (catalog.Config.Validate)
		"[service:agent] control_tokens_file", // control API: required with control_listen
		"[service:agent] lissten",             // a typo: unknown option
		"[tsig:broken] algorithm",             // a key named by two options
		"[agent:file] file_group",             // file backend
		"[agent:bind9] query_destination",     // bind9 backend, which owns it
		"[agent:powerdns] zone_kind",          // powerdns backend
		"[agent:powerdns] port",               // a second one in the same section
		"[agent:memory] query_destination",    // the relay destination of a backend without one
	}
	path := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := harness.RunAgentCommand(t, 20*time.Second, "check-config", "--config", path)
	if code == 0 {
		t.Fatalf("check-config: exit 0, want non-zero; output:\n%s", out)
	}
	header, body, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(header, "dnsagent: configuration ") {
		t.Fatalf("check-config output does not start with the file's name:\n%s", out)
	}
	lines := strings.Split(body, "\n")
	if len(lines) != len(want) {
		t.Errorf("check-config printed %d problem lines for %d mistakes:\n%s", len(lines), len(want), out)
	}
	for _, w := range want {
		n := 0
		for _, line := range lines {
			if problem, ok := strings.CutPrefix(line, w+": "); ok && strings.TrimSpace(problem) != "" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines name %s with a problem, want 1; output:\n%s", n, w, out)
		}
	}
}

// check-config may run beside an agent in the middle of a transfer: it must leave the
// temp files in diff_index_dir alone (the agent's index being written), where the agent
// itself sweeps them at start as an interrupted run's.
func TestCheckConfigLeavesTheAgentsTempFiles(t *testing.T) {
	t.Parallel()
	cfg := harness.AgentConfig{Masters: "127.0.0.1:53"}
	cfg.DiffIndexDir = t.TempDir()
	writing := filepath.Join(cfg.DiffIndexDir, ".tmp-4711")
	if err := os.WriteFile(writing, []byte("an index being written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := harness.CheckConfig(t, cfg); code != 0 {
		t.Fatalf("check-config: exit %d; output:\n%s", code, out)
	}
	if _, err := os.Stat(writing); err != nil {
		t.Fatalf("check-config removed the running agent's temp file: %v", err)
	}
	if entries, _ := os.ReadDir(cfg.DiffIndexDir); len(entries) != 1 {
		t.Errorf("check-config left %d files in diff_index_dir, want the agent's one: %v", len(entries), entries)
	}
}

// An operator moving from Designate's agent copies its sections of designate.conf as they
// are: [service:agent] with Designate's options (threads among them) and
// [backend:agent:bind9] written with dashes, query-destination a bare IP. check-config
// takes them.
func TestCheckConfigTakesDesignatesSections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "rndc.key")
	if err := os.WriteFile(key, []byte("key \"rndc-key\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `[service:agent]
workers = 4
threads = 1000
listen = 127.0.0.1:` + fmt.Sprint(harness.FreePort(t)) + `
tcp_backlog = 100
tcp_recv_timeout = 0.5
allow_notify = 127.0.0.1
masters = 127.0.0.1:5354
backend_driver = bind9
transfer_source = 127.0.0.1
notify_delay = 0
metrics_listen = 127.0.0.1:` + fmt.Sprint(harness.FreePort(t)) + `
diff_index_dir = ` + filepath.Join(dir, "index") + `

[backend:agent:bind9]
rndc-host = 127.0.0.1
rndc-port = ` + fmt.Sprint(harness.FreePort(t)) + `
rndc-key-file = ` + key + `
zone-file-path = ` + filepath.Join(dir, "zones") + `
query-destination = 127.0.0.1
`
	path := filepath.Join(dir, "designate.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := harness.RunAgentCommand(t, 20*time.Second, "check-config", "--config", path)
	if code != 0 || !strings.Contains(out, "is valid (backend bind9)") {
		t.Errorf("check-config of Designate's sections: exit %d; output:\n%s", code, out)
	}
}

// --set on the command line overrides the file: a configuration that is wrong in the file
// is valid with the option set right, and a misspelt --set is named.
func TestCheckConfigSetOverrides(t *testing.T) {
	t.Parallel()
	cfg := harness.AgentConfig{Masters: "127.0.0.1:53", Service: map[string]string{"workers": "0"}}
	path := harness.WriteAgentConfig(t, &cfg)
	if code, out := harness.RunAgentCommand(t, 20*time.Second, "check-config", "--config", path); code == 0 || !strings.Contains(out, "workers") {
		t.Errorf("check-config with workers = 0: exit %d, want non-zero naming workers; output:\n%s", code, out)
	}
	if code, out := harness.RunAgentCommand(t, 20*time.Second, "check-config", "--config", path, "--set", "service:agent.workers=4"); code != 0 {
		t.Errorf("check-config with --set service:agent.workers=4: exit %d, want 0; output:\n%s", code, out)
	}
	code, out := harness.RunAgentCommand(t, 20*time.Second, "check-config", "--config", path,
		"--set", "service:agent.workers=4", "--set", "service:agent.wrokers=4")
	if code == 0 || !strings.Contains(out, "--set service:agent.wrokers: unknown option") {
		t.Errorf("check-config with a misspelt --set: exit %d, want non-zero naming it; output:\n%s", code, out)
	}
}

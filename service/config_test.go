package service

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/fanout"
	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/middleware"
	"go.uber.org/zap"
)

func TestReadConfigDefaultsAndIPv6Masters(t *testing.T) {
	f, err := config.Parse("[service:agent]\nmasters = 192.0.2.10:5354, [2001:db8::10]:5354, 192.0.2.11\n")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ReadConfig(f)
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.10:5354"),
		netip.MustParseAddrPort("[2001:db8::10]:5354"),
		netip.MustParseAddrPort("192.0.2.11:53"),
	}
	if len(cfg.Transfer.Masters) != len(want) {
		t.Fatalf("masters = %v, want %v", cfg.Transfer.Masters, want)
	}
	for i := range want {
		if cfg.Transfer.Masters[i] != want[i] {
			t.Errorf("master %d = %v, want %v", i, cfg.Transfer.Masters[i], want[i])
		}
	}
	if cfg.Listen[0] != DefaultListen || cfg.BackendDriver != "file" || cfg.Transfer.Workers != 8 ||
		cfg.CreateTimeout.Seconds() != 20 || cfg.TCPRecvTimeout.Seconds() != 0.5 || cfg.TCPBacklog != 100 {
		t.Errorf("defaults not as documented: %+v", cfg)
	}
	// Issue 14: a hostile primary is bounded by default, the README's figures.
	if tr := cfg.Transfer; tr.StallTimeout != 30*time.Second || tr.MaxDuration != time.Hour || tr.MaxRecords != 2_000_000 || tr.MaxBytes != 1<<30 {
		t.Errorf("transfer limits by default: stall %v, duration %v, records %d, bytes %d; want 30s, 1h, 2000000, 1 GiB",
			tr.StallTimeout, tr.MaxDuration, tr.MaxRecords, tr.MaxBytes)
	}
	if !cfg.AllowNotify.Allows(netip.MustParseAddr("127.0.0.1")) || cfg.AllowNotify.Allows(netip.MustParseAddr("192.0.2.10")) {
		t.Errorf("empty allow_notify with loopback listeners must mean loopback, got %s", cfg.AllowNotify)
	}
}

func TestReadConfigRejects(t *testing.T) {
	tests := map[string]struct{ text, want string }{
		"non-loopback listener without allow_notify": {
			"listen = 0.0.0.0:5358\nmasters = 192.0.2.1\n", "[service:agent] allow_notify: empty while listening beyond loopback"},
		"malformed master":    {"masters = not-an-ip:53\n", `[service:agent] masters: "not-an-ip:53": "not-an-ip" is not an IP address`},
		"master bad port":     {"masters = 192.0.2.1:99999\n", `[service:agent] masters: "192.0.2.1:99999"`},
		"no masters":          {"workers = 2\n", "[service:agent] masters: required"},
		"bad acl":             {"masters = 192.0.2.1\nallow_notify = 10.0.0.0/33\n", `[service:agent] allow_notify: "10.0.0.0/33"`},
		"listen without port": {"masters = 192.0.2.1\nlisten = 127.0.0.1\n", `[service:agent] listen: "127.0.0.1" is not IP:port`},
		"zero workers":        {"masters = 192.0.2.1\nworkers = 0\n", "[service:agent] workers: 0 is below the minimum 1"},
		// check-config must reject what would stop the agent at start.
		"unknown log level": {"masters = 192.0.2.1\nlog_level = loud\n", `[service:agent] log_level: "loud": use debug, info, warn or error`},
		// A timeout of 0 is no time at all: every transfer, or every TCP request, would fail.
		"no stall time":   {"masters = 192.0.2.1\ntransfer_stall_timeout = 0\n", "[service:agent] transfer_stall_timeout: must be more than 0"},
		"no connect time": {"masters = 192.0.2.1\ntransfer_connect_timeout = 0s\n", "[service:agent] transfer_connect_timeout: must be more than 0"},
		"no TCP time":     {"masters = 192.0.2.1\ntcp_recv_timeout = 0\n", "[service:agent] tcp_recv_timeout: must be more than 0"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := config.Parse("[service:agent]\n" + tt.text)
			if err != nil {
				t.Fatal(err)
			}
			ReadConfig(f)
			if err := f.Err(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestAllowNotifyAnyAndAllowQueryDefault(t *testing.T) {
	f, _ := config.Parse("[service:agent]\nlisten = 0.0.0.0:5358\nmasters = 192.0.2.1\nallow_notify = any\n")
	cfg := ReadConfig(f)
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	if !cfg.AllowNotify.Allows(netip.MustParseAddr("203.0.113.9")) || !cfg.AllowQuery.Allows(netip.MustParseAddr("203.0.113.9")) {
		t.Errorf("allow_notify = any must allow everyone, and allow_query default to it")
	}
}

func TestLoadUnknownBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.conf")
	os.WriteFile(path, []byte("[service:agent]\nmasters = 192.0.2.1\nbackend_driver = nosuch\n"), 0o600)
	_, _, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), `backend_driver: unknown backend "nosuch"`) {
		t.Errorf("error %v, want it to name the unknown backend", err)
	}
}

func TestLoadSampleConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DNSAGENT_AGENT_FILE_ZONE_FILE_PATH", filepath.Join(dir, "zones"))
	cfg, be, err := Load("../etc/agent.conf")
	if err != nil {
		t.Fatalf("the shipped sample must load: %v", err)
	}
	if cfg.BackendDriver != "file" || be == nil {
		t.Errorf("sample backend %q", cfg.BackendDriver)
	}
}

// backend_driver listing several backends opens the fan-out, each member with its own
// [agent:NAME] section and its own diff index under diff_index_dir; a backend listed
// twice or unknown is refused with the option named.
func TestLoadFanout(t *testing.T) {
	dir := t.TempDir()
	write := func(drivers string) string {
		path := filepath.Join(dir, "agent.conf")
		text := "[service:agent]\nmasters = 192.0.2.1\nbackend_driver = " + drivers + "\ndiff_index_dir = " + filepath.Join(dir, "index") +
			"\n[agent:file]\nzone_file_path = " + filepath.Join(dir, "zones") + "\nquery_destination = 127.0.0.1:5353\n"
		os.WriteFile(path, []byte(text), 0o600)
		return path
	}
	cfg, be, err := Load(write("memory, file"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := be.(*fanout.Backend); !ok || cfg.Transfer.Index != nil {
		t.Fatalf("backend %T, engine index %v: want the fan-out, the indexes its members'", be, cfg.Transfer.Index)
	}
	if cfg.QueryDestination != "127.0.0.1:5353" {
		t.Errorf("query_destination %q, want the file section's", cfg.QueryDestination)
	}
	for _, sub := range []string{"memory", "file"} {
		if _, err := os.Stat(filepath.Join(dir, "index", sub)); err != nil {
			t.Errorf("no diff index directory for %s: %v", sub, err)
		}
	}
	for drivers, want := range map[string]string{
		"file, file":   `backend_driver: backend "file" is listed twice`,
		"file, nosuch": `backend_driver: unknown backend "nosuch"`,
	} {
		if _, _, err := Load(write(drivers)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("backend_driver = %s: error %v, want %q", drivers, err, want)
		}
	}
	// One backend: exactly as before, the engine holds the index.
	if cfg, be, err := Load(write("file")); err != nil || cfg.Transfer.Index == nil {
		t.Errorf("single backend: %T, index %v, %v", be, cfg.Transfer.Index, err)
	}
}

// query_destination of a backend that only relays to it takes a bare IP as port 53, as
// masters do; the relay gets IP:port, which it can dial.
func TestRelayDestinationDefaultPort(t *testing.T) {
	dir := t.TempDir()
	for dest, want := range map[string]string{
		"127.0.0.1":      "127.0.0.1:53",
		"[::1]":          "[::1]:53",
		"::1":            "[::1]:53",
		"127.0.0.1:5353": "127.0.0.1:5353",
	} {
		path := filepath.Join(dir, "agent.conf")
		text := "[service:agent]\nmasters = 192.0.2.1\ndiff_index_dir = " + filepath.Join(dir, "index") +
			"\n[agent:file]\nzone_file_path = " + filepath.Join(dir, "zones") + "\nquery_destination = " + dest + "\n"
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := Load(path)
		if err != nil {
			t.Fatalf("query_destination = %s: %v", dest, err)
		}
		if cfg.QueryDestination != want {
			t.Errorf("query_destination = %s: the relay gets %q, want %q", dest, cfg.QueryDestination, want)
		}
	}
}

// SIGHUP re-reads the allow lists with the --set overrides of the start: an override of
// allow_notify outlives the reload, and the overrides of other sections (not read again)
// are no error.
func TestReloadAllowListsKeepsSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(path, []byte("[service:agent]\nmasters = 192.0.2.1\nallow_notify = 192.0.2.10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	allow := middleware.NewAllowLists(middleware.LoopbackACL(), middleware.LoopbackACL())
	s := listenerService(&Config{}, allow, zap.NewNop())
	s.ReloadAllowLists(path, "service:agent.allow_notify=198.51.100.7", "agent:file.zone_file_path=/srv/zones")
	// allow_query, not set, follows allow_notify: both lists hold the --set value alone.
	if !allow.Query(netip.MustParseAddr("198.51.100.7")) || allow.Known(netip.MustParseAddr("192.0.2.10")) {
		t.Errorf("after the reload the allow lists are %v, want the --set value 198.51.100.7 alone", allow.Entries())
	}
}

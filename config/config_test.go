package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/option"
)

func TestValuesKeepSemicolonsAndHashes(t *testing.T) {
	f, err := Parse(`
[agent:x]
password = se;cr#et   ; a real comment
command = /bin/run --x=1;2
# a comment line
; another
`)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section("agent:x")
	if got := s.String("password", ""); got != "se;cr#et" {
		t.Errorf("password = %q, want se;cr#et", got)
	}
	if got := s.String("command", ""); got != "/bin/run --x=1;2" {
		t.Errorf("command = %q", got)
	}
	if err := f.Err(); err != nil {
		t.Errorf("unexpected error: %v", err)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	t.Setenv("DNSAGENT_SERVICE_AGENT_LISTEN", "127.0.0.2:53")
	t.Setenv("DNSAGENT_AGENT_FILE_ZONE_FILE_PATH", "/srv/zones")
	f, err := Parse("[service:agent]\nlisten = 127.0.0.1:5358\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Section("service:agent").String("listen", ""); got != "127.0.0.2:53" {
		t.Errorf("listen = %q, want the environment's 127.0.0.2:53", got)
	}
	if got := f.Section("agent:file").String("zone_file_path", ""); got != "/srv/zones" {
		t.Errorf("zone_file_path = %q, want /srv/zones from the environment", got)
	}
}

// --set overrides the environment and the file; an item naming an option nobody reads,
// or not of the form SECTION.OPTION=VALUE, is an error naming it.
func TestSetOverridesEnvironmentAndFile(t *testing.T) {
	t.Setenv("DNSAGENT_SERVICE_AGENT_LISTEN", "127.0.0.2:53")
	f, err := Parse("[service:agent]\nlisten = 127.0.0.1:5358\nworkers = 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set([]string{"service:agent.listen = 127.0.0.3:53", "service:agent.workers=4", "tsig:key.example.secret=c2VjcmV0", "service:agent.lissten=x"}); err != nil {
		t.Fatal(err)
	}
	s := f.Section("service:agent")
	if listen, workers := s.String("listen", ""), s.Int("workers", 8, 1); listen != "127.0.0.3:53" || workers != 4 {
		t.Errorf("listen %q, workers %d; want --set's 127.0.0.3:53 and 4", listen, workers)
	}
	if secret := f.Section("tsig:key.example").String("secret", ""); secret != "c2VjcmV0" {
		t.Errorf("secret of [tsig:key.example] %q, want --set's (a section name with dots)", secret)
	}
	if err := f.Err(); err == nil || err.Error() != "--set service:agent.lissten: unknown option" {
		t.Errorf("errors %v, want only the misspelt --set named", err)
	}
	for _, bad := range []string{"listen=127.0.0.1:53", "service:agent.listen", "service:agent.=x", ".listen=x"} {
		if err := f.Set([]string{bad}); err == nil || !strings.Contains(err.Error(), "SECTION.OPTION=VALUE") {
			t.Errorf("--set %q: %v, want an error showing the form", bad, err)
		}
	}
}

func TestAliasSection(t *testing.T) {
	f, err := Parse("[backend:agent:file]\nzone_file_path = /z\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Section("agent:file", "backend:agent:file").String("zone_file_path", ""); got != "/z" {
		t.Errorf("zone_file_path = %q, want /z from the alias section", got)
	}
}

// Designate's samples write options with dashes (rndc-host), which oslo.config reads as
// rndc_host: a section copied from designate.conf means the same here. Both spellings of
// one option at once are one mistake, named.
func TestDashedOptionNames(t *testing.T) {
	f, err := Parse("[backend:agent:bind9]\nrndc-host = 192.0.2.1\nrndc_port = 953\nzone-file-path = /z\n")
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section("agent:bind9", "backend:agent:bind9")
	if host, port, dir := s.String("rndc_host", ""), s.Int("rndc_port", 0, 1), s.String("zone_file_path", ""); host != "192.0.2.1" || port != 953 || dir != "/z" {
		t.Errorf("rndc_host %q, rndc_port %d, zone_file_path %q; want 192.0.2.1, 953, /z", host, port, dir)
	}
	if err := f.Err(); err != nil {
		t.Errorf("dashed options reported: %v", err)
	}

	f, _ = Parse("[service:agent]\nnotify_delay = 1\nnotify-delay = 2\n")
	f.Section("service:agent").Seconds("notify_delay", 0)
	if err := f.Err(); err == nil || !strings.Contains(err.Error(), "[service:agent] notify-delay: set twice, also as notify_delay") {
		t.Errorf("both spellings: %v, want the option named as set twice", err)
	}
}

func TestErrorsNameSectionAndOption(t *testing.T) {
	f, err := Parse(`
[service:agent]
workers = many
tcp_recv_timeout = soon
alow_notify = 10.0.0.1
debug = maybe
mode = 999
`)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section("service:agent")
	if got := s.Int("workers", 8, 1); got != 8 {
		t.Errorf("a bad int gives the default, got %d", got)
	}
	s.Seconds("tcp_recv_timeout", time.Second)
	s.Bool("debug", false)
	s.FileMode("mode", 0o644)
	err = f.Err()
	if err == nil {
		t.Fatal("no error for bad values")
	}
	for _, want := range []string{
		`[service:agent] workers: "many" is not an integer`,
		`[service:agent] tcp_recv_timeout: "soon"`,
		`[service:agent] debug: "maybe" is not a boolean`,
		`[service:agent] mode: "999" is not an octal file mode`,
		`[service:agent] alow_notify: unknown option`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestSecondsAcceptNumbersAndDurations(t *testing.T) {
	f, _ := Parse("[s]\na = 0.5\nb = 20\nc = 250ms\n")
	s := f.Section("s")
	for key, want := range map[string]time.Duration{"a": 500 * time.Millisecond, "b": 20 * time.Second, "c": 250 * time.Millisecond} {
		if got := s.Seconds(key, 0); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}

func TestLoadMissingFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.conf")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v does not name %s", err, path)
	}
	if err := os.WriteFile(path, []byte("[service:agent]\nworkers = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Section("service:agent").Int("workers", 8, 1); got != 3 {
		t.Errorf("workers = %d, want 3", got)
	}
}

// Every problem is a field error naming section and option, and an option is reported
// once: a component's check of a value that could not be read, or a broken [tsig:NAME]
// key named by two options, adds no second line.
func TestProblemsAreFieldErrorsReportedOnce(t *testing.T) {
	f, err := Parse("[service:agent]\nworkers = many\nmasters_tsig_key = k\ntsig_keys = k\nlog_level = debug\n" +
		"[tsig:k]\nalgorithm = hmac-md5\n")
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section("service:agent")
	s.Int("workers", 8, 1)
	s.TSIGKey("masters_tsig_key")
	s.TSIGKeys("tsig_keys")
	s.String("log_level", "")
	s.Check(errors.Join(option.Errorf("workers", "must be at least 1"), option.Errorf("log_level", "%q: use info", "debug")))
	want := []option.Error{
		{Section: "service:agent", Option: "workers", Problem: `"many" is not an integer`},
		{Section: "tsig:k", Option: "algorithm", Problem: `"hmac-md5": use hmac-sha256, hmac-sha512 or hmac-sha1`},
		{Section: "service:agent", Option: "log_level", Problem: `"debug": use info`},
	}
	got := option.Fields(f.Err())
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(got), len(want), f.Err())
	}
	for i := range want {
		if *got[i] != want[i] {
			t.Errorf("problem %d = %+v, want %+v", i, *got[i], want[i])
		}
	}
}

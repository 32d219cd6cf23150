package powerdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dnsagent/dnsagent/config"
)

func readConfig(t *testing.T, text string) (Config, error) {
	t.Helper()
	f, err := config.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigFrom(f.Section("agent:powerdns", "backend:agent:powerdns"))
	return cfg, errors.Join(f.Err(), cfg.Validate())
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := readConfig(t, "[agent:powerdns]\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Account != "dnsagent" || cfg.ZoneKind != "NATIVE" || cfg.BatchSize != 1000 || !cfg.PDNSControlEnabled ||
		!slices.Equal(cfg.PDNSControl, []string{"pdns_control"}) || cfg.DNSSEC || !cfg.NameIndex {
		t.Errorf("defaults: %+v", cfg)
	}
	mc, err := cfg.mysqlConfig()
	if err != nil {
		t.Fatal(err)
	}
	if mc.Net != "tcp" || mc.Addr != "127.0.0.1:3306" || mc.User != "powerdns" || mc.DBName != "powerdns" || !mc.InterpolateParams {
		t.Errorf("driver config: %+v", mc)
	}
}

func TestConfigOptions(t *testing.T) {
	cfg, err := readConfig(t, `[backend:agent:powerdns]
host = db.example.net
port = 3307
user = agent
password = se;cr#et ; a comment
dbname = pdns
account = designate
zone_kind = master
pdns_control = /usr/bin/pdns_control --config-dir=/etc/powerdns
pdns_socket_dir = /run/pdns
batch_size = 500
dnssec = true
pdnsutil = pdnsutil --config-dir=/etc/powerdns
name_index = false
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "se;cr#et" || cfg.ZoneKind != "MASTER" || cfg.Account != "designate" || cfg.BatchSize != 500 || !cfg.DNSSEC || cfg.NameIndex {
		t.Errorf("options: %+v", cfg)
	}
	mc, _ := cfg.mysqlConfig()
	if mc.Addr != "db.example.net:3307" || mc.Passwd != "se;cr#et" || mc.User != "agent" || mc.DBName != "pdns" {
		t.Errorf("driver config: %+v", mc)
	}
	ctl := newControl(cfg, nil)
	if want := []string{"/usr/bin/pdns_control", "--config-dir=/etc/powerdns", "--socket-dir=/run/pdns"}; !slices.Equal(ctl.pdnsControl, want) {
		t.Errorf("pdns_control argv %q, want %q", ctl.pdnsControl, want)
	}

	cfg, err = readConfig(t, "[agent:powerdns]\nsocket = /run/mysqld/mysqld.sock\n")
	if err != nil {
		t.Fatal(err)
	}
	if mc, _ := cfg.mysqlConfig(); mc.Net != "unix" || mc.Addr != "/run/mysqld/mysqld.sock" {
		t.Errorf("socket: %+v", mc)
	}

	cfg, err = readConfig(t, "[agent:powerdns]\ndsn = agent:pw@tcp(10.0.0.1:3306)/pdns?timeout=3s\n")
	if err != nil {
		t.Fatal(err)
	}
	if mcs, _ := cfg.mysqlConfigs(); len(mcs) != 1 || mcs[0].Addr != "10.0.0.1:3306" || mcs[0].Timeout != 3*time.Second || mcs[0].Passwd != "pw" {
		t.Errorf("dsn: %+v", mcs)
	}

	// Galera: several nodes, as hosts (sharing the other options) or as DSNs.
	cfg, err = readConfig(t, "[agent:powerdns]\nhosts = 10.0.0.1:3306, 10.0.0.2:3307\nuser = agent\nfailback = 30\n")
	if err != nil {
		t.Fatal(err)
	}
	if mcs, _ := cfg.mysqlConfigs(); len(mcs) != 2 || mcs[0].Addr != "10.0.0.1:3306" || mcs[1].Addr != "10.0.0.2:3307" ||
		mcs[1].User != "agent" || !mcs[1].InterpolateParams || cfg.Failback != 30*time.Second {
		t.Errorf("hosts: %+v", mcs)
	}
	cfg, err = readConfig(t, "[agent:powerdns]\ndsn = a:pw@tcp(10.0.0.1:3306)/pdns  a:pw@tcp(10.0.0.2:3306)/pdns\n")
	if err != nil {
		t.Fatal(err)
	}
	if mcs, _ := cfg.mysqlConfigs(); len(mcs) != 2 || mcs[1].Addr != "10.0.0.2:3306" {
		t.Errorf("dsns: %+v", mcs)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"dsn = a:b@tcp(h:1)/db\nhost = h", "dsn: set either dsn or"},
		{"dsn = a:secret@tcp(h:1/db", "dsn: not a valid"},
		{"hosts = a:1, b", `hosts: "b" is not host:port`},
		{"hosts = a:1\nhost = b", "hosts: set either hosts or"},
		{"zone_kind = SLAVE", `zone_kind: "SLAVE" is neither`},
		{"account = " + strings.Repeat("a", 41), "account:"},
		{"batch_size = 0", "batch_size: 0 is below the minimum"},
		{"port = 70000", "port: 70000 is not a TCP port"},
		{"pdns_control =", "pdns_control: must name a command"},
		{"dnssec = yes\npdnsutil =", "pdnsutil: must name a command"},
		{"dnssec = maybe", "dnssec:"},
		{"bogus = 1", "bogus: unknown option"},
	}
	for _, tt := range tests {
		_, err := readConfig(t, "[agent:powerdns]\n"+tt.text+"\n")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.text, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error shows the password: %v", tt.text, err)
		}
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, true},
		{fmt.Errorf("insert: %w", &mysql.MySQLError{Number: 1205}), true},
		{&mysql.MySQLError{Number: 1927}, true},
		{&mysql.MySQLError{Number: 1062}, false},
		{&mysql.MySQLError{Number: 1146}, false},
		{mysql.ErrInvalidConn, true},
		{io.ErrUnexpectedEOF, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{errors.New("record x: type RRSIG cannot be stored"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	p := retryPolicy{attempts: 3, wait: time.Millisecond}
	deadlock := &mysql.MySQLError{Number: 1213}
	var calls []int
	err := p.do(t.Context(), func(attempt int) error {
		calls = append(calls, attempt)
		if attempt < 3 {
			return deadlock
		}
		return nil
	})
	if err != nil || !slices.Equal(calls, []int{1, 2, 3}) {
		t.Errorf("do = %v after attempts %v", err, calls)
	}
	calls = nil
	if err := p.do(t.Context(), func(a int) error { calls = append(calls, a); return deadlock }); !errors.Is(err, deadlock) || len(calls) != 3 {
		t.Errorf("always failing: %v after %v", err, calls)
	}
	calls = nil
	permanent := errors.New("syntax")
	if err := p.do(t.Context(), func(a int) error { calls = append(calls, a); return permanent }); err != permanent || len(calls) != 1 {
		t.Errorf("permanent error: %v after %v", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls = nil
	if err := p.do(ctx, func(a int) error { calls = append(calls, a); return deadlock }); err == nil || len(calls) != 1 {
		t.Errorf("canceled: %v after %v", err, calls)
	}
}

package powerdns

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

// commands records the pdns_control and pdnsutil runs; fail makes the runs whose argv
// contains it fail.
type commands struct {
	mu   sync.Mutex
	ran  []string
	fail string
}

func (c *commands) run(_ context.Context, argv []string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	line := strings.Join(argv, " ")
	c.ran = append(c.ran, line)
	if c.fail != "" && strings.Contains(line, c.fail) {
		return "Fatal error: Unable to connect to remote '/run/pdns/pdns.controlsocket'", errors.New("exit status 1")
	}
	return "Ok", nil
}

func (c *commands) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ran := c.ran
	c.ran = nil
	return ran
}

func fakeBackend(t *testing.T, cfg Config) (*Backend, *fakeStore, *commands) {
	t.Helper()
	st, cmds := newFakeStore(), &commands{}
	b := newBackend(st, cfg, cmds.run)
	b.retry = retryPolicy{attempts: 3, wait: time.Millisecond}
	return b, st, cmds
}

func controlConfig() Config {
	cfg := testConfig()
	cfg.PDNSControlEnabled, cfg.PDNSControl, cfg.PDNSSocketDir = true, []string{"pdns_control"}, "/run/pdns"
	return cfg
}

func TestFakeScenarios(t *testing.T) {
	runScenarios(t, func(t *testing.T) (*Backend, func() []string) {
		b, st, _ := fakeBackend(t, testConfig())
		return b, func() []string { return st.rowsOf("example.com") }
	})
}

func TestFakeInconsistent(t *testing.T) {
	runInconsistent(t, func(t *testing.T) (*Backend, func() []string) {
		b, st, _ := fakeBackend(t, testConfig())
		return b, func() []string { return st.rowsOf("example.com") }
	})
}

// Every command runs after the commit, in the order that makes pdns_server serve the new
// data at once: rectify, rediscover (zone list changed), purge.
func TestControlCommands(t *testing.T) {
	ctx := t.Context()
	zone := "example.com."
	b, _, cmds := fakeBackend(t, controlConfig())
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"create", func() error { return b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 1, 5))) },
			[]string{"pdns_control --socket-dir=/run/pdns rediscover", "pdns_control --socket-dir=/run/pdns purge example.com$"}},
		{"replace", func() error { return b.Replace(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 2, 5))) },
			[]string{"pdns_control --socket-dir=/run/pdns purge example.com$"}},
		{"apply", func() error {
			cs, _ := buildChange(t, backendtest.Zone(zone, 2, 5), []scenarioStep{{add: []string{"n.example.com. 300 IN A 192.0.2.1"}}})
			return b.Apply(ctx, zone, cs)
		}, []string{"pdns_control --socket-dir=/run/pdns purge example.com$"}},
		{"delete", func() error { return b.Delete(ctx, zone) },
			[]string{"pdns_control --socket-dir=/run/pdns rediscover", "pdns_control --socket-dir=/run/pdns purge example.com$"}},
		{"failed replace runs nothing", func() error {
			if err := b.Replace(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 3, 5))); err == nil {
				t.Error("Replace of a deleted zone succeeded")
			}
			return nil
		}, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := cmds.take(); !slices.Equal(got, s.want) {
			t.Errorf("%s ran %q, want %q", s.name, got, s.want)
		}
	}

	cfg := controlConfig()
	cfg.DNSSEC, cfg.PDNSUtil = true, []string{"pdnsutil", "--config-dir=/etc/powerdns"}
	b, _, cmds = fakeBackend(t, cfg)
	if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 1, 5))); err != nil {
		t.Fatal(err)
	}
	want := []string{"pdnsutil --config-dir=/etc/powerdns rectify-zone example.com",
		"pdns_control --socket-dir=/run/pdns rediscover", "pdns_control --socket-dir=/run/pdns purge example.com$"}
	if got := cmds.take(); !slices.Equal(got, want) {
		t.Errorf("with dnssec, create ran %q, want %q", got, want)
	}

	b, _, cmds = fakeBackend(t, testConfig()) // pdns_control_enabled = false
	if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 1, 5))); err != nil {
		t.Fatal(err)
	}
	if got := cmds.take(); len(got) != 0 {
		t.Errorf("pdns_control disabled, yet %q ran", got)
	}
}

// A zone PowerDNS was not told about is not created: Designate would see it fail to
// appear for 300 s. It is removed again so the retry starts over.
func TestCreateUndoneWhenPDNSIsNotTold(t *testing.T) {
	b, st, cmds := fakeBackend(t, controlConfig())
	cmds.fail = "rediscover"
	err := b.Create(t.Context(), "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 1, 5)))
	if err == nil || !strings.Contains(err.Error(), "rediscover") || !strings.Contains(err.Error(), "Unable to connect") ||
		!strings.Contains(err.Error(), "zone removed again") {
		t.Fatalf("Create = %v, want the rediscover failure with pdns_control's output", err)
	}
	if _, err := b.Serial(t.Context(), "example.com."); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("after the failed create: Serial = %v, want ErrNotFound", err)
	}
	if len(st.domains) != 0 {
		t.Errorf("domains left: %v", st.domains)
	}
	// A replace whose purge fails keeps the committed new version and says so.
	cmds.fail = ""
	if err := b.Create(t.Context(), "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 1, 5))); err != nil {
		t.Fatal(err)
	}
	cmds.fail = "purge"
	err = b.Replace(t.Context(), "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 2, 5)))
	if err == nil || !strings.Contains(err.Error(), "committed, but") {
		t.Errorf("Replace with a failing purge = %v", err)
	}
	if serial, _ := b.Serial(t.Context(), "example.com."); serial != 2 {
		t.Errorf("serial %d after the replace, want 2", serial)
	}
}

// A zone the agent does not own is never listed, read, changed or deleted.
func TestOwnership(t *testing.T) {
	ctx := t.Context()
	b, st, cmds := fakeBackend(t, controlConfig())
	soa := row{Name: "other.test", Type: "SOA", Content: "ns hostmaster 5 1 1 1 1", TTL: 300, Auth: true}
	st.put("other.test", "someone-else", soa)
	st.put("null.test", "", soa)
	st.put("case.test", "DNSAgent", soa)
	if err := b.Create(ctx, "mine.test.", backendtest.Stream(backendtest.Zone("mine.test.", 1, 2))); err != nil {
		t.Fatal(err)
	}
	cmds.take()
	if zones, err := b.Zones(ctx); err != nil || !slices.Equal(zones, []string{"mine.test."}) {
		t.Errorf("Zones = %v, %v; want only mine.test.", zones, err)
	}
	before := st.rowsOf("other.test")
	for _, zone := range []string{"other.test.", "null.test.", "case.test."} {
		if _, err := b.Serial(ctx, zone); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Serial(%s) = %v, want ErrNotOwned", zone, err)
		}
		untouched := backendtest.Stream(backendtest.Zone(zone, 9, 2))
		err := b.Create(ctx, zone, untouched)
		if !errors.Is(err, backend.ErrNotOwned) || !strings.Contains(err.Error(), "not the agent's \"dnsagent\"") {
			t.Errorf("Create(%s) = %v, want a clear ErrNotOwned", zone, err)
		}
		if err := b.Replace(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 9, 2))); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Replace(%s) = %v, want ErrNotOwned", zone, err)
		}
		cs, _ := buildChange(t, backendtest.Zone(zone, 5, 0), []scenarioStep{{add: []string{"n." + zone + " 300 IN A 192.0.2.1"}}})
		if err := b.Apply(ctx, zone, cs); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Apply(%s) = %v, want ErrNotOwned", zone, err)
		}
		if err := b.Delete(ctx, zone); !errors.Is(err, backend.ErrNotOwned) {
			t.Errorf("Delete(%s) = %v, want ErrNotOwned", zone, err)
		}
	}
	if after := st.rowsOf("other.test"); !slices.Equal(before, after) || len(st.domains) != 4 {
		t.Errorf("someone else's zone changed: %v -> %v (%d domains)", before, after, len(st.domains))
	}
	if got := cmds.take(); len(got) != 0 {
		t.Errorf("commands ran for zones that are not ours: %q", got)
	}
}

// A deadlock or a lost connection in the middle of a load rolls the transaction back and
// runs it again from the spool: the zone is complete, every row once.
func TestRetryReadsTheSpoolAgain(t *testing.T) {
	b, st, _ := fakeBackend(t, testConfig())
	b.batch = 4
	zone := "example.com."
	inserts := 0
	st.fail = func(op string) error {
		if op == "insertRecords" {
			if inserts++; inserts == 3 {
				return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
			}
		}
		return nil
	}
	want := backendtest.Zone(zone, 1, 20)
	if err := b.Create(t.Context(), zone, backendtest.Stream(backendtest.Batches(want, 3)...)); err != nil {
		t.Fatal(err)
	}
	if got := len(st.rowsOf("example.com")); got != len(want) {
		t.Errorf("%d rows after a retried create, want %d", got, len(want))
	}
	if st.commits != 1 {
		t.Errorf("%d commits, want 1", st.commits)
	}

	// A connection that stays lost: the old version stays, and the error says why.
	st.fail = func(op string) error {
		if op == "insertRecords" {
			return mysql.ErrInvalidConn
		}
		return nil
	}
	err := b.Replace(t.Context(), zone, backendtest.Stream(backendtest.Zone(zone, 2, 20)))
	if !errors.Is(err, mysql.ErrInvalidConn) {
		t.Errorf("Replace with the database gone = %v", err)
	}
	st.fail = nil
	if serial, _ := b.Serial(t.Context(), zone); serial != 1 {
		t.Errorf("serial %d after the failed replace, want 1", serial)
	}
	if err := b.Replace(t.Context(), zone, backendtest.Stream(backendtest.Zone(zone, 2, 20))); err != nil {
		t.Errorf("the next Replace: %v", err)
	}
}

// A create whose commit reached the database but whose reply was lost finds its own zone
// on the retry and replaces it with the same data.
func TestCreateRetryAfterLostCommitReply(t *testing.T) {
	b, st, _ := fakeBackend(t, testConfig())
	st.lostCommitReplies = 1
	zone := "example.com."
	if err := b.Create(t.Context(), zone, backendtest.Stream(backendtest.Zone(zone, 1, 5))); err != nil {
		t.Fatal(err)
	}
	if serial, err := b.Serial(t.Context(), zone); err != nil || serial != 1 {
		t.Errorf("Serial = %d, %v", serial, err)
	}
	if st.commits != 2 || len(st.rowsOf("example.com")) != 7 {
		t.Errorf("%d commits, rows %v", st.commits, st.rowsOf("example.com"))
	}
}

// Check is what check-config shows as a warning: the database and pdns_control.
func TestCheck(t *testing.T) {
	b, st, cmds := fakeBackend(t, controlConfig())
	if err := b.Check(t.Context()); err != nil {
		t.Errorf("Check = %v", err)
	}
	if got := cmds.take(); !slices.Equal(got, []string{"pdns_control --socket-dir=/run/pdns rping"}) {
		t.Errorf("Check ran %q", got)
	}
	cmds.fail = "rping"
	st.fail = func(op string) error {
		if op == "ping" {
			return errors.New("dial tcp 127.0.0.1:3306: connect: connection refused")
		}
		return nil
	}
	err := b.Check(t.Context())
	for _, want := range []string{"database: dial tcp", "pdns_control is not reachable", "Unable to connect"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %v, want it to say %q", err, want)
		}
	}
}

// A transaction over the write-set limit is the transaction's fault, not the node's:
// moving to another node (which refuses it alike) would only defeat the one-node writes.
// A commit the node lost its primary component for is the node's.
func TestNodeErrorLeavesWriteSetLimits(t *testing.T) {
	for _, tt := range []struct {
		err  *mysql.MySQLError
		node bool
	}{
		{&mysql.MySQLError{Number: 1180, Message: "wsrep_max_ws_rows exceeded"}, false},
		{&mysql.MySQLError{Number: 1180, Message: "Got error 6 \"No such device or address\" during COMMIT"}, true},
		{&mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, false},
		{&mysql.MySQLError{Number: 1047, Message: "WSREP has not yet prepared node for application use"}, true},
	} {
		if got := nodeError(tt.err); got != tt.node {
			t.Errorf("nodeError(%v) = %v, want %v", tt.err, got, tt.node)
		}
	}
}

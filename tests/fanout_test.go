package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// fanoutStatus is the part of /zones/NAME a fan-out adds.
type fanoutStatus struct {
	State         string  `json:"state"`
	AppliedSerial *uint32 `json:"applied_serial"`
	LastError     string  `json:"last_error"`
	Backends      map[string]struct {
		Serial    *uint32 `json:"serial"`
		State     string  `json:"state"`
		LastError string  `json:"last_error"`
		Failures  int     `json:"failures"`
		LastApply string  `json:"last_apply"`
	} `json:"backends"`
}

func zoneStatusOf(t *testing.T, a *harness.Agent) (fanoutStatus, string) {
	t.Helper()
	code, body := httpGet(t, a, "/zones/"+zone)
	var st fanoutStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/zones/%s = %d %s", zone, code, body)
	}
	return st, body
}

func serialIs(p *uint32, want uint32) bool { return p != nil && *p == want }

// TestFanoutPowerDNSAndFile is issue 16 acceptance 3: backend_driver = powerdns, file fed
// by one transfer. After a CREATE and after a change + NOTIFY, pdns_server answers like
// the primary and the file holds the primary's zone. With MariaDB stopped, a change +
// NOTIFY still reaches the file while /zones shows powerdns failing and the zone
// retrying; once MariaDB is back, powerdns catches up without another NOTIFY.
func TestFanoutPowerDNSAndFile(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{})
	harness.Require(t, "named", "rndc")
	// SOA retry 2 s: the engine's retries stay close together while MariaDB is down.
	version := func(serial uint32, extra ...string) string {
		return strings.Replace(pdnsZone(serial, extra...), " 3600 600 86400 300", " 3600 2 86400 300", 1)
	}
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: map[string]string{zone: version(1)}, IXFRFromDifferences: true})
	files := t.TempDir()
	a := harness.StartAgent(t, harness.AgentConfig{
		BackendDriver:    "powerdns",
		Masters:          p.Addr(),
		AllowNotify:      "127.0.0.1",
		QueryDestination: e.p.Addr(),
		ZoneFilePath:     files,
		Service:          map[string]string{"backend_driver": "powerdns, file", "retry_min": "0.5"},
		Backend: map[string]string{"zone_file_path": "-", "dsn": e.m.DSN(e.dbname),
			"pdns_control": harness.LookPath("pdns_control"), "pdns_socket_dir": e.p.SocketDir()},
		Sections: "[agent:file]\nzone_file_path = " + files + "\n",
	})
	both := func(what string, serial uint32) {
		t.Helper()
		if _, ok := pdnsServed(e, zone, serial, 10*time.Second); !ok {
			t.Fatalf("%s: pdns_server does not serve serial %d\n%s", what, serial, a.Output())
		}
		if _, d := waitFile(a, primarySet(t, p), 10*time.Second); d != "" {
			t.Fatalf("%s: the zone file differs from the primary:\n%s", what, d)
		}
		for _, q := range pdnsQueries(t, p, zone) {
			if d := pdnsCompare(t, p.Addr(), e.p.Addr(), q[0], q[1]); d != "" {
				t.Errorf("%s: answers differ for %s", what, d)
			}
		}
		st, body := zoneStatusOf(t, a)
		if !serialIs(st.Backends["powerdns"].Serial, serial) || !serialIs(st.Backends["file"].Serial, serial) ||
			st.Backends["powerdns"].State != "ok" || st.Backends["file"].State != "ok" {
			t.Errorf("%s: /zones/%s does not show both backends at serial %d:\n%s", what, zone, serial, body)
		}
	}

	create(t, a, 0x1601)
	both("after the CREATE", 1)

	p.SetZone(t, zone, version(2, "www.example.com. IN A 192.0.2.81", "new.example.com. IN TXT \"added\""))
	notify(t, a, 0x1602)
	both("after a change and a NOTIFY", 2)
	if st, body := zoneStatusOf(t, a); st.Backends["file"].LastApply != "ixfr" || st.Backends["powerdns"].LastApply != "ixfr" {
		t.Errorf("the change did not reach both backends as one IXFR:\n%s", body)
	}

	e.m.Stop(t)
	p.SetZone(t, zone, version(3, "www.example.com. IN A 192.0.2.82", "down.example.com. IN TXT \"while MariaDB was down\""))
	notify(t, a, 0x1603)
	if took, d := waitFile(a, primarySet(t, p), 10*time.Second); d != "" {
		t.Fatalf("with MariaDB down the file was not updated:\n%s\n%s", d, a.Output())
	} else {
		t.Logf("with MariaDB down, the file got serial 3 %v after the NOTIFY", took)
	}
	var body string
	if !harness.Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		var st fanoutStatus
		st, body = zoneStatusOf(t, a)
		pdns := st.Backends["powerdns"]
		return pdns.State == "failing" && pdns.Failures > 0 && pdns.LastError != "" && serialIs(pdns.Serial, 2) &&
			serialIs(st.Backends["file"].Serial, 3) && st.Backends["file"].State == "ok" &&
			serialIs(st.AppliedSerial, 2) && strings.Contains(st.LastError, "backend powerdns")
	}) {
		t.Fatalf("with MariaDB down, /zones/%s does not show powerdns failing at serial 2, the file at 3:\n%s", zone, body)
	}
	t.Logf("/zones/%s with MariaDB down:\n%s", zone, body)

	e.m.Start(t)
	took, ok := pdnsServed(e, zone, 3, 30*time.Second)
	if !ok {
		t.Fatalf("pdns_server does not serve serial 3 30 s after MariaDB came back:\n%s", a.Output())
	}
	t.Logf("powerdns caught up %v after MariaDB came back, without a NOTIFY", took)
	both("after MariaDB came back", 3)
	if st, body := zoneStatusOf(t, a); !serialIs(st.AppliedSerial, 3) || st.Backends["file"].LastApply != "held" {
		t.Errorf("after the catch-up the zone is not fresh, or the file was written again:\n%s", body)
	}
	a.CheckAlive(t)
}

package tests

// End-to-end tests of issue 16, acceptance 1: verify, resync and dump against what
// PowerDNS's rows and named really hold, after a change made behind the agent's back.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// verifyCase runs the acceptance scenario on an agent that holds zone: tamper changes one
// record behind its back (the A record of r0 becomes 192.0.2.99); verify must print that
// difference exactly and exit 1, resync repair it and say so, verify then exit 0, and dump
// must pass named-checkzone and equal the primary's AXFR.
// soaChange is verify's report of a SOA at serial held where the primary has serial 1.
// changed counts the RRsets that differ.
func verifyCase(t *testing.T, a *harness.Agent, p *harness.Primary, soaChange string, changed int, tamper func()) {
	t.Helper()
	run := func(args ...string) (int, string) {
		return harness.RunAgentCommand(t, 60*time.Second, append(args, zone, "--config", a.Path)...)
	}
	if code, out := run("verify"); code != 0 || !strings.Contains(out, "no difference") {
		t.Fatalf("verify before any change: exit %d, want 0:\n%s", code, out)
	}
	tamper()
	code, out := run("verify")
	want := soaChange + "~ r0." + zone + " A\n" +
		"    - r0." + zone + "\t300\tIN\tA\t192.0.2.99\n" +
		"    + r0." + zone + "\t300\tIN\tA\t10.0.0.0\n" +
		fmt.Sprintf("0 to add, 0 to delete, %d to change\n", changed)
	if code != 1 || out != want {
		t.Fatalf("verify after the change: exit %d, want 1; output:\n%s\nwant:\n%s", code, out, want)
	}
	code, out = run("resync")
	if code != 0 || !strings.Contains(out, "repaired: 1 records deleted, 1 added") {
		t.Fatalf("resync: exit %d, want 0 and the repair:\n%s", code, out)
	}
	t.Logf("resync said:\n%s", out)
	if code, out := run("verify"); code != 0 {
		t.Fatalf("verify after resync: exit %d, want 0:\n%s", code, out)
	}

	code, out = run("dump")
	if code != 0 {
		t.Fatalf("dump: exit %d:\n%s", code, out)
	}
	path := filepath.Join(t.TempDir(), "dump.zone")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := harness.RunTool(30*time.Second, harness.LookPath("named-checkzone"), zone, path)
	if err != nil {
		t.Fatalf("named-checkzone refuses the dump: %v\n%s", err, check)
	}
	got, err := harness.ZoneFileSet(path, bogusOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if d := harness.DiffSets(primarySet(t, p), got, 8); d != "" {
		t.Fatalf("dump differs from the primary's AXFR: %s", d)
	}
}

// TestVerify1PowerDNS: a row's content changed in MariaDB behind the agent's back (the row
// count, which the diff index checks, stays the same).
func TestVerify1PowerDNS(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "named-checkzone")
	pe := startPDNSEnv(t, harness.PDNSOptions{})
	z := harness.NewZone(zone, 1, 200)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	cfg := pdnsAgentConfig(pe)
	cfg.Masters, cfg.AllowNotify = p.Addr(), "127.0.0.1"
	a := harness.StartAgent(t, cfg)
	create(t, a, 0x1601)
	db := pe.m.DB(t, pe.dbname)
	verifyCase(t, a, p, "", 1, func() {
		res, err := db.ExecContext(stmtCtx(t), `UPDATE records SET content = '192.0.2.99' WHERE name = ? AND type = 'A'`,
			"r0."+strings.TrimSuffix(zone, "."))
		if n, _ := res.RowsAffected(); err != nil || n != 1 {
			t.Fatalf("changing the row: %v (%d rows)", err, n)
		}
	})
	if _, ok := pdnsServed(pe, zone, z.Serial, 5*time.Second); !ok {
		t.Fatal("pdns_server does not serve the zone")
	}
	if d := pdnsCompare(t, p.Addr(), pe.p.Addr(), "r0."+zone, "A"); d != "" {
		t.Errorf("after resync: %s", d)
	}
}

// TestVerify1Bind9: a record changed in named by a dynamic update behind the agent's back
// (named also raises the serial); verify reads named's zone by AXFR.
func TestVerify1Bind9(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc", "named-checkzone")
	z := harness.NewZone(zone, 1, 200)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	n := harness.StartBackendNamed(t, harness.BackendOptions{})
	a := harness.StartAgent(t, bind9AgentConfig(p, n, "update"))
	create(t, a, 0x1602)
	// named raises the serial of an update that does not (serial-update-method).
	soa := func(serial string) string {
		return "\t3600\tIN\tSOA\tns1." + zone + " hostmaster." + zone + " " + serial + " 3600 600 86400 300\n"
	}
	soaChange := "~ " + zone + " SOA\n    - " + zone + soa("2") + "    + " + zone + soa("1")
	verifyCase(t, a, p, soaChange, 2, func() {
		m := new(dns.Msg)
		m.SetUpdate(zone)
		old, _ := dns.NewRR("r0." + zone + " 300 IN A 10.0.0.0")
		repl, _ := dns.NewRR("r0." + zone + " 300 IN A 192.0.2.99")
		soa, _ := dns.NewRR(zone + " 3600 IN SOA ns1." + zone + " hostmaster." + zone + " 1 3600 600 86400 300")
		m.Remove([]dns.RR{old})
		m.Insert([]dns.RR{repl, soa})
		m.SetTsig(harness.UpdateKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{harness.UpdateKeyName + ".": n.UpdateSecret}}
		r, _, err := c.Exchange(m, n.Addr())
		if err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("UPDATE behind the agent's back: %v %v", r, err)
		}
	})
}

// TestVerify1FileEditedByHand: a zone file an operator edited in the usual master-file
// form (spaces, not the agent's tabs) cannot be patched in place; resync replaces it with
// the primary's zone, and verify then finds no difference.
func TestVerify1FileEditedByHand(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named")
	z := harness.NewZone(zone, 1, 200)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"})
	create(t, a, 0x1603)
	run := func(args ...string) (int, string) {
		return harness.RunAgentCommand(t, 60*time.Second, append(args, zone, "--config", a.Path)...)
	}
	text, err := os.ReadFile(a.ZoneFile(zone))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(text), "r0."+zone+"\t300\tIN\tA\t10.0.0.0", "r0."+zone+" 300 IN A 192.0.2.99", 1)
	if edited == string(text) {
		t.Fatalf("test setup: no line for r0's A record in the zone file:\n%.400s", text)
	}
	if err := os.WriteFile(a.ZoneFile(zone), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := run("verify"); code != 1 || !strings.Contains(out, "~ r0."+zone+" A") {
		t.Fatalf("verify after the edit: exit %d, want 1 and r0's A changed:\n%s", code, out)
	}
	code, out := run("resync")
	if code != 0 || !strings.Contains(out, "replaced with the primary's") {
		t.Fatalf("resync of the hand-edited file: exit %d, want 0 and a replace:\n%s", code, out)
	}
	if code, out := run("verify"); code != 0 {
		t.Fatalf("verify after resync: exit %d, want 0:\n%s", code, out)
	}
	if d := diffFile(a, primarySet(t, p)); d != "" {
		t.Errorf("after resync: %s", d)
	}
}

// TestVerify4HelpListsTheCommands: --help names each command and control API route.
func TestVerify4HelpListsTheCommands(t *testing.T) {
	t.Parallel()
	code, out := harness.RunAgentCommand(t, 20*time.Second, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, want := range []string{"dnsagent verify ZONE | --all", "dnsagent dump ZONE", "dnsagent resync ZONE", "--http URL",
		"GET /v1/zones", "GET|POST|DELETE /v1/zones/NAME", "POST /v1/zones/NAME/resync", "GET /v1/zones/NAME/verify"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

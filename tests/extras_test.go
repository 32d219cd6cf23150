package tests

import (
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Beyond the numbered acceptance points: SPEC behaviours that need a real peer.

// named itself NOTIFYs the agent (also-notify, NOTIFY carrying the SOA, flags 0x2400 from
// an ephemeral port) and the agent follows.
func TestSpecPrimaryNotifyDrivesUpdate(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	agentAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	z := harness.NewZone(zone, 2024060601, 300)
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{
		Zones:               map[string]string{zone: z.Text()},
		AlsoNotify:          []string{agentAddr},
		IXFRFromDifferences: true,
	})
	a := harness.StartAgent(t, harness.AgentConfig{Listen: agentAddr, Masters: p.Addr(), AllowNotify: "127.0.0.1"})
	create(t, a, 0x0e01)
	z2 := z.Next(20, 30)
	p.SetZone(t, zone, z2.Text()) // named sends NOTIFY to the agent on reload
	want := primarySet(t, p)
	if took, d := waitFile(a, want, 10*time.Second); d != "" {
		t.Errorf("the agent did not follow named's own NOTIFY: %s", d)
	} else {
		t.Logf("zone updated %v after named's reload", took)
	}
	a.CheckAlive(t)
}

// SPEC §3: IXFR whenever the backend holds a serial. With ixfr-from-differences named
// has the history, so the agent's refresh after a NOTIFY must be an IXFR (named logs
// which kind of transfer it served).
func TestSpecIXFRUsedWhenPrimaryHasHistory(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 500, ixfr: true, allowLocal: true})
	create(t, e.a, 0x0e11)
	z2 := e.z.Next(10, 10)
	e.p.SetZone(t, zone, z2.Text())
	want := primarySet(t, e.p)
	notify(t, e.a, 0x0e12)
	if _, d := waitFile(e.a, want, 10*time.Second); d != "" {
		t.Fatalf("zone not updated: %s", d)
	}
	ixfr := regexp.MustCompile(`transfer of 'example\.com/IN': IXFR started`)
	if !ixfr.MatchString(e.p.Output()) {
		t.Errorf("the agent refreshed a zone it holds with AXFR although the primary serves IXFR (SPEC §3: IXFR whenever the backend holds a serial)")
	}
	// The IXFR path must give the same records as a full transfer.
	if d := diffFile(e.a, harness.AXFRSet(e.p.AXFR(t, zone))); d != "" {
		t.Errorf("after the incremental refresh: %s", d)
	}
}

// SPEC §2: CREATE answers SERVFAIL (0xf002) when the transfer fails, and when it takes
// longer than create_timeout; a CREATE still running keeps running and completes.
func TestSpecCreateFailureAndTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 100, proxy: true, allowLocal: true,
		agent: harness.AgentConfig{CreateTimeout: "1"}})
	a, px := e.a, e.proxy

	// A zone the primary does not serve: SERVFAIL, no AA, question echoed.
	bad := harness.CreateMsg(0x0e21, "not-served.example.")
	expectBytes(t, "CREATE of a zone the master does not serve", udp(t, a.Addr(), bad, 25*time.Second), harness.Reply(bad, 0xf002))

	// A slow master: the reply comes at create_timeout (1 s), SERVFAIL.
	px.SetDelay(3 * time.Second)
	req := harness.CreateMsg(0x0e22, zone)
	start := time.Now()
	r := udp(t, a.Addr(), req, 25*time.Second)
	took := time.Since(start)
	expectBytes(t, "CREATE slower than create_timeout", r, harness.Reply(req, 0xf002))
	if took > 2500*time.Millisecond {
		t.Errorf("CREATE with create_timeout = 1 answered after %v", took)
	}
	// The create goes on and lands; a repeated CREATE then answers NOERROR+AA.
	if _, d := waitFile(a, primarySet(t, e.p), 20*time.Second); d != "" {
		t.Errorf("the timed-out CREATE did not complete in the background: %s", d)
	}
	px.Pass()
	create(t, a, 0x0e23)
	a.CheckAlive(t)
}

// SPEC §2: a DELETE that arrives while the zone's transfer is running wins: the transfer
// that started before it never re-creates the zone.
func TestSpecDeleteDuringTransfer(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 100, proxy: true, allowLocal: true,
		agent: harness.AgentConfig{CreateTimeout: "1"}})
	a, px := e.a, e.proxy
	px.SetDelay(2 * time.Second)
	req := harness.CreateMsg(0x0e31, zone)
	expectBytes(t, "CREATE slower than create_timeout", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf002))
	conns := px.TCPConns()
	del := harness.DeleteMsg(0x0e32, zone)
	expectBytes(t, "DELETE during the transfer", udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf400))
	// The held transfer connections would have been answered by now (2 s each).
	never := stillFor(5*time.Second, func() bool {
		_, err := os.Stat(a.ZoneFile(zone))
		return os.IsNotExist(err)
	})
	if !never {
		t.Errorf("the zone file appeared after the DELETE (a transfer started before the DELETE was applied)")
	}
	t.Logf("transfer connections during the test: %d before the DELETE, %d in all", conns, px.TCPConns())
	a.CheckAlive(t)
}

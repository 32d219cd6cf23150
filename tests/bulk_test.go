package tests

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Issue 15 acceptance 2: zones created in a burst (Designate's worker sends CREATEs from
// a thread pool: 32 in flight) into bind9 and powerdns, end to end. The request path
// answers a CREATE past 64 running at once SERVFAIL "busy" (service.maxCommandsServing,
// middleware.Busy); 32 stay well under it, as a closed-loop client must (a slot is freed
// only after the reply is sent). Every CREATE is
// answered NOERROR (none SERVFAIL for load: create_timeout is the default 20 s), and
// named / pdns_server then answer every zone's SOA with the primary's serial. The agent
// reuses its connections to the primary: with one per transfer, each left a local port in
// TIME_WAIT for 60 s, and a burst of 28,227 ran out of ports (transfer/client.go).
func TestBulk2CreateBurst1000(t *testing.T) { t.Parallel(); bulkCreate(t, 1000) }

func TestBulk2CreateBurst10000(t *testing.T) {
	if testing.Short() || os.Getenv("DNSAGENT_LONG_TESTS") == "" {
		t.Skip("10,000 zones take minutes on 2 cores (DNSAGENT_LONG_TESTS=1 runs it); TestBulk2CreateBurst1000 runs always")
	}
	bulkCreate(t, 10000)
}

const bulkInFlight = 32

const bulkZoneText = `$TTL 300
@ IN SOA ns1 hostmaster 7 3600 600 86400 300
@ IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.2
`

func bulkCreate(t *testing.T, n int) {
	harness.Require(t, "named", "rndc", "mariadbd", "mariadb-install-db", "pdns_server", "pdns_control")
	zones := make([]string, n)
	texts := make(map[string]string, n)
	for i := range zones {
		zones[i] = fmt.Sprintf("b%05d.bulk.", i)
		texts[zones[i]] = bulkZoneText
	}
	p := harness.StartPrimary(t, texts)
	if !harness.Eventually(2*time.Minute, 50*time.Millisecond, func() bool {
		s, err := harness.QuerySerial(p.Addr(), zones[n-1])
		return err == nil && s == 7
	}) {
		t.Fatal("the primary does not serve the zones")
	}

	nb := harness.StartBackendNamed(t, harness.BackendOptions{})
	bcfg := bind9AgentConfig(p, nb, "reload")
	bcfg.Workers, bcfg.CreateTimeout = "-", "-"                // the agent's defaults
	e := startPDNSEnv(t, harness.PDNSOptions{ZoneCache: true}) // PowerDNS's default: only a rediscover shows a new zone
	pcfg := harness.AgentConfig{BackendDriver: "powerdns", Masters: p.Addr(), AllowNotify: "127.0.0.1",
		QueryDestination: e.p.Addr(), Workers: "-", CreateTimeout: "-",
		Backend: map[string]string{"zone_file_path": "-", "dsn": e.m.DSN(e.dbname),
			"pdns_control": harness.LookPath("pdns_control"), "pdns_socket_dir": e.p.SocketDir()}}
	for _, c := range []struct {
		name   string
		cfg    harness.AgentConfig
		server string
	}{{"bind9", bcfg, nb.Addr()}, {"powerdns", pcfg, e.p.Addr()}} {
		a := harness.StartAgent(t, c.cfg)
		start := time.Now()
		var next, servfail, other atomic.Int64
		var stuck atomic.Bool
		var wg sync.WaitGroup
		for w := 0; w < bulkInFlight; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < n && !stuck.Load(); i = int(next.Add(1) - 1) {
					r, err := harness.ExchangeUDP(a.Addr(), harness.CreateMsg(uint16(i), zones[i]), 60*time.Second)
					switch {
					case err != nil:
						// No reply in 60 s (create_timeout is 20 s): the agent is stuck, and
						// the CREATEs left would cost a minute each.
						stuck.Store(true)
						other.Add(1)
					case len(r) < 4:
						other.Add(1)
					case r[3]&0x0f == 2:
						servfail.Add(1)
					case r[3]&0x0f != 0:
						other.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		a.CheckAlive(t)
		if stuck.Load() {
			t.Fatalf("%s: a CREATE got no reply within 60 s; the burst was stopped", c.name)
		}
		// Both bursts count: the first one's stay in TIME_WAIT for 60 s.
		if tw, err := harness.TimeWaits(p.Addr()); err != nil || tw > n/10 {
			t.Errorf("%s: %d sockets toward the primary in TIME_WAIT after %d CREATEs (%v), want at most %d: a connection per transfer",
				c.name, tw, n, err, n/10)
		}
		if servfail.Load() > 0 || other.Load() > 0 {
			t.Errorf("%s: %d CREATEs answered SERVFAIL, %d other or no reply, of %d", c.name, servfail.Load(), other.Load(), n)
		}
		var unserved []string
		for _, z := range zones {
			if len(unserved) == 10 {
				break // enough to tell; a server that is down would cost 3 s a zone
			}
			if s, err := harness.QuerySerial(c.server, z); err != nil || s != 7 {
				unserved = append(unserved, fmt.Sprintf("%s (%d, %v)", z, s, err))
			}
		}
		if len(unserved) > 0 {
			t.Errorf("%s: zones not served after their CREATE was answered (the first %d found of %d): %v", c.name, len(unserved), n, unserved[:min(3, len(unserved))])
		}
		t.Logf("%s: %d zones created with %d in flight in %v: %.0f zones/s", c.name, n, bulkInFlight, took.Round(time.Millisecond), float64(n)/took.Seconds())
	}
}

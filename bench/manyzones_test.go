package bench

// Issue 15 (b): a restart with many zones held. The agent's zone files are written
// directly (the CREATE path is table (a)), a private named serves every zone from one
// shared file with its query log on, and the agent is started on them: the time until
// every zone was checked, the peak SOA queries a second named logged, and the RSS.

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

var (
	flagRestartZones = flag.Int("restart-zones", 100_000, "zones held for TestBenchManyZonesRestart")
	flagRestartRate  = flag.Int("restart-rate", 1000, "max_checks_per_second for TestBenchManyZonesRestart")
)

const manyZonesText = `$TTL 300
@ IN SOA ns1.example. admin.example. 7 3600 600 86400 300
@ IN NS ns1.example.
www IN A 192.0.2.1
`

// TestBenchManyZonesRestart prints table (b) (DNSAGENT_BENCH=1).
func TestBenchManyZonesRestart(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1")
	}
	n, rate := *flagRestartZones, *flagRestartRate
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("z%d.many.", i)
	}
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{SharedZones: names, SharedZoneText: manyZonesText, QueryLog: true})
	dir := t.TempDir()
	for _, name := range names {
		text := fmt.Sprintf("%s 300 IN SOA ns1.example. admin.example. 7 3600 600 86400 300\n%s 300 IN NS ns1.example.\nwww.%s 300 IN A 192.0.2.1\n",
			name, name, name)
		if err := os.WriteFile(filepath.Join(dir, harness.ZoneFileName(name)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	cfg := harness.AgentConfig{Masters: p.Addr(), ZoneFilePath: dir,
		Service: map[string]string{"max_checks_per_second": fmt.Sprint(rate), "startup_check_spread": "1"}}
	var a *agent
	var pa *profiledAgent
	if *flagProfOut != "" { // the profiling build, for the heap once every zone was checked
		pa = startProfiledAgent(t, "many", cfg)
		a = pa.agent
	} else {
		a = startAgent(t, "many", agentBin, cfg)
	}
	mem := watchMemory(a)
	metrics := a.cfg.MetricsListen
	var took time.Duration
	for {
		if v, ok := gauge(metrics, "dnsagent_zones_unchecked "); ok && v == 0 {
			took = time.Since(start)
			break
		}
		// The cap bounds the rate from above; on a loaded machine the agent's own pace (a
		// zone-file read and a TCP SOA query per check, workers-1 at once) may be lower.
		if time.Since(start) > time.Duration(4*n/rate)*time.Second+time.Minute {
			t.Fatalf("start-up checks of %d zones not done after %v", n, time.Since(start))
		}
		a.checkAlive()
		time.Sleep(200 * time.Millisecond)
	}
	rss, _ := mem.stop()
	if pa != nil {
		heapAt(t, pa, *flagProfOut, fmt.Sprintf("restart-held-%d", n))
	}
	soas, err := p.QueryTimes("SOA", start)
	if err != nil {
		t.Fatal(err)
	}
	peak, first := 0, 0
	for i := range soas {
		for soas[i].Sub(soas[first]) >= time.Second {
			first++
		}
		peak = max(peak, i-first+1)
	}
	fmt.Printf("\n### (b) Restart with %d zones held\n\n| zones | max_checks_per_second | all checked after | SOA queries at the primary | peak SOA queries in one second | peak RSS |\n|---|---|---|---|---|---|\n| %d | %d | %s | %d | %d | %s |\n\n",
		n, n, rate, fmtDur(took), len(soas), peak, fmtMiB(rss))
}

// gauge reads one unlabelled metric from the agent's /metrics.
func gauge(metricsAddr, prefix string) (float64, bool) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

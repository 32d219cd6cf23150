package bench

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// TestBenchPassthrough measures the passthrough alone (issue 15), in about a minute: a
// private named serving a 10k zone, queried directly, through the agent and through
// dnsdist, with 16 and 1 clients; it prints the table and the targets. The full table
// (make bench) measures the same against the bind9 backend's named.
//
//	DNSAGENT_BENCH=1 go test -run '^TestBenchPassthrough$' -count=1 -v ./bench -args -runs=3
//
// -also-agents=/tmp/old-agent,... measures more agent builds side by side (e.g. main's).
// -relay-cpus=1, with the bench itself under `taskset -c 0`, gives the relays a CPU of
// their own (make bench-pinned).
var flagAlsoAgents = flag.String("also-agents", "", "TestBenchPassthrough and the many-zones file row: more agent binaries to measure side by side (comma-separated)")

func TestBenchPassthrough(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1")
	}
	harness.Require(t, "named", "rndc")
	z := harness.NewZone("passthrough.example.", 1, 10_000)
	p := harness.StartPrimary(t, map[string]string{z.Name: z.Text()})
	cfg := harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", AllowQuery: queryAllow, QueryDestination: p.Addr()}
	a := startAgent(t, "passthrough", agentBin, cfg)
	res := newResults(Options{Sizes: []int{10_000}, Runs: *flagRuns, QueryFor: *flagQueryFor})
	dd, pid := startDnsdist(t, res, p.Addr())
	paths := passthroughPaths(p.Addr(), a, dd, pid)
	for i, bin := range strings.Split(*flagAlsoAgents, ",") {
		if bin != "" {
			b := startAgent(t, fmt.Sprint("also", i), bin, cfg)
			paths = append(paths, qpsPath{"agent " + bin, b.addr(), b.pid()})
		}
	}
	measurePassthrough(t, res, questions(z, 2000), paths, *flagRuns, *flagQueryFor)
	fmt.Printf("%-30s %7s %10s %10s %10s %7s\n", "path", "clients", "q/s", "p50", "p99", "errors")
	for _, q := range res.QPS {
		fmt.Printf("%-30s %7d %10.0f %10s %10s %7d\n", q.Path, q.Clients, q.QPS(), fmtDur(q.P50), fmtDur(q.P99), q.Errors)
	}
	for _, c := range res.passthroughTargets() {
		fmt.Printf("%s: %s (met: %v)\n", c.Target, c.Measured, c.Met)
	}
	for _, n := range res.Notes {
		fmt.Println("note:", n)
	}
}

// The dnsdist target shows, beside the two medians, the agent's throughput over dnsdist's
// round by round; the verdict stays the medians'.
func TestPassthroughTargetShowsEachRound(t *testing.T) {
	paths := []qpsPath{{name: pathDirect}, {name: pathAgent}, {name: pathDnsdist}}
	q := func(path string, queries int) qpsResult {
		return qpsResult{Path: path, Clients: 16, Queries: queries, Duration: time.Second}
	}
	got := [][]qpsResult{
		{q(pathDirect, 1000), q(pathDirect, 1000), q(pathDirect, 1000)},
		{q(pathAgent, 480), q(pathAgent, 600), q(pathAgent, 550)},
		{q(pathDnsdist, 500), q(pathDnsdist, 500), q(pathDnsdist, 560)},
	}
	ratios := pairRatios(paths, got)
	if want := []float64{0.96, 1.2, 550.0 / 560}; !slices.Equal(ratios, want) {
		t.Fatalf("pairRatios = %v, want %v", ratios, want)
	}
	if r := pairRatios(paths[:2], got[:2]); r != nil {
		t.Errorf("pairRatios without dnsdist = %v, want nil", r)
	}

	res := &Results{QPS: []qpsResult{got[0][1], got[1][2], got[2][1]}, PairRatios: ratios}
	for _, c := range res.passthroughTargets() {
		if c.Target != "Passthrough, 16 clients ≥ dnsdist's ratio" {
			continue
		}
		if !c.Met || !strings.Contains(c.Measured, "agent 0.55×, dnsdist 0.50×") ||
			!strings.HasSuffix(c.Measured, "in each round: 0.96, 1.20, 0.98") {
			t.Errorf("dnsdist target %+v", c)
		}
		return
	}
	t.Fatal("no dnsdist target")
}

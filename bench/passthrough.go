package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Passthrough paths, as the table names them.
const (
	pathDirect  = "named directly"
	pathAgent   = "through the agent"
	pathDnsdist = "through dnsdist"
)

// qpsPath is one way to reach named: directly, through the agent, through dnsdist; pid is
// the relay's process (0: none), whose CPU time per query is logged.
type qpsPath struct {
	name, addr string
	pid        int
}

// passthroughPaths are named directly, through the agent and through dnsdist (when it
// runs: dnsdist "" leaves it out).
func passthroughPaths(direct string, agent *agent, dnsdist string, dnsdistPID int) []qpsPath {
	paths := []qpsPath{{pathDirect, direct, 0}, {pathAgent, agent.addr(), agent.pid()}}
	if dnsdist != "" {
		paths = append(paths, qpsPath{pathDnsdist, dnsdist, dnsdistPID})
	}
	return paths
}

// cpuTime is the user + system time a process used so far (procCPU), 0 if unknown.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	self, _ := procCPU(pid)
	return self
}

// minPassthroughRounds is the fewest rounds the passthrough takes, whatever -runs says.
// Its rounds are short (-query-for), and the two relays are level within the rounds'
// spread (±8% on 2 shared cores): a median of 3 put the dnsdist verdict on either side
// from one run to the next (bench/README.md, Passthrough).
const minPassthroughRounds = 5

// measurePassthrough runs closed-loop UDP query load against each path with 16 and then
// 1 clients. The paths take turns, runs rounds of d each (at least minPassthroughRounds),
// so a load change on the shared cores hits all of them; each path's run with the median
// throughput is kept.
func measurePassthrough(t testing.TB, res *Results, qs []dns.Question, paths []qpsPath, runs int, d time.Duration) {
	for _, workers := range []int{16, 1} {
		got := make([][]qpsResult, len(paths))
		for run := 0; run < max(runs, minPassthroughRounds); run++ {
			for i, path := range paths {
				cpu0 := cpuTime(path.pid)
				r, err := queryLoad(path.addr, qs, workers, d)
				if err != nil {
					t.Fatal(err)
				}
				if r.Queries == 0 {
					// Every answer was an error: nothing to compare (in TestBenchTable,
					// -cases=passthrough without full leaves named without the zone).
					t.Fatalf("passthrough %s: no query answered NOERROR in %s (%d errors); does named serve the zone?", path.name, d, r.Errors)
				}
				r.Path, r.Clients = path.name, workers
				got[i] = append(got[i], r)
				cpu := ""
				if path.pid != 0 && r.Queries > 0 {
					cpu = fmt.Sprintf(", relay CPU %s a query", fmtDur((cpuTime(path.pid)-cpu0)/time.Duration(r.Queries)))
				}
				t.Logf("passthrough %s, %d clients: %.0f q/s, p50 %s, p99 %s, %d errors%s", path.name, workers, r.QPS(), fmtDur(r.P50), fmtDur(r.P99), r.Errors, cpu)
			}
		}
		if workers == 16 {
			res.PairRatios = pairRatios(paths, got)
		}
		for _, rs := range got {
			slices.SortFunc(rs, func(a, b qpsResult) int { return cmp.Compare(a.QPS(), b.QPS()) })
			res.QPS = append(res.QPS, rs[len(rs)/2])
		}
	}
}

// pairRatios divides the agent's throughput by dnsdist's in each round (got: each path's
// rounds, in order). Rounds next to each other saw much the same machine, so these
// spread less than two medians taken apart; nil without both paths.
func pairRatios(paths []qpsPath, got [][]qpsResult) []float64 {
	agent, dnsdist := slices.IndexFunc(paths, func(p qpsPath) bool { return p.name == pathAgent }),
		slices.IndexFunc(paths, func(p qpsPath) bool { return p.name == pathDnsdist })
	if agent < 0 || dnsdist < 0 {
		return nil
	}
	var ratios []float64
	for i, a := range got[agent] {
		if d := got[dnsdist][i].QPS(); d > 0 {
			ratios = append(ratios, a.QPS()/d)
		}
	}
	return ratios
}

// passthroughTargets are issue 15's: with 16 clients the agent relays at least half of
// named's direct throughput and at least dnsdist's share of it, and its p99 is at most
// twice the direct one.
func (r *Results) passthroughTargets() []Check {
	find := func(path string, clients int) (qpsResult, bool) {
		for _, q := range r.QPS {
			if q.Path == path && q.Clients == clients {
				return q, true
			}
		}
		return qpsResult{}, false
	}
	var cs []Check
	for _, clients := range []int{16, 1} {
		direct, ok1 := find(pathDirect, clients)
		agent, ok2 := find(pathAgent, clients)
		if !ok1 || !ok2 || direct.QPS() == 0 {
			continue
		}
		ratio := agent.QPS() / direct.QPS()
		if clients == 16 {
			cs = append(cs, Check{Target: "Passthrough, 16 clients ≥ 0.5 × named directly",
				Measured: fmt.Sprintf("%.0f / %.0f q/s = %.2f×", agent.QPS(), direct.QPS(), ratio), Met: ratio >= 0.5})
			if dd, ok := find(pathDnsdist, clients); ok {
				dr := dd.QPS() / direct.QPS()
				measured := fmt.Sprintf("agent %.2f×, dnsdist %.2f×", ratio, dr)
				if len(r.PairRatios) > 0 {
					rounds := make([]string, len(r.PairRatios))
					for i, x := range r.PairRatios {
						rounds[i] = fmt.Sprintf("%.2f", x)
					}
					measured += "; agent ÷ dnsdist in each round: " + strings.Join(rounds, ", ")
				}
				cs = append(cs, Check{Target: "Passthrough, 16 clients ≥ dnsdist's ratio", Measured: measured, Met: ratio >= dr})
			}
		}
		cs = append(cs, Check{Target: fmt.Sprintf("Passthrough p99, %d client(s) ≤ 2 × named directly", clients),
			Measured: fmt.Sprintf("%s / %s = %.2f×", fmtDur(agent.P99), fmtDur(direct.P99), float64(agent.P99)/float64(direct.P99)),
			Met:      agent.P99 <= 2*direct.P99})
	}
	return cs
}

package bench

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	flagSizes      = flag.String("sizes", "10000", "comma-separated zone sizes (generated records)")
	flagRuns       = flag.Int("runs", 3, "runs per case; medians are reported")
	flagOut        = flag.String("out", "", "write the Markdown report to this file too")
	flagLongRun    = flag.Duration("long-run", time.Minute, "a case whose first run takes longer runs once")
	flagNotifyRate = flag.Int("notify-rate", 5000, "NOTIFYs per second offered for the latency figures")
	flagNotifyFor  = flag.Duration("notify-for", 10*time.Second, "how long NOTIFYs are offered")
	flagQueryFor   = flag.Duration("query-for", 5*time.Second, "passthrough load per path")
	flagChange     = flag.Int("change", 5, "records deleted, and as many added, by each change")
	flagAgent      = flag.String("agent", "", "measure this agent binary instead of building ./cmd/agent")
	flagCases      = flag.String("cases", "", "comma-separated parts to run (limits, full, passthrough, ixfr, fullzone, notify); all when empty")
	flagMany       = flag.String("many", "10000", "zone counts of the many-zones table (case many), comma-separated")
	flagManyParts  = flag.String("many-parts", "", "rows of the many-zones table: file, bind9, named, powerdns, pdns; all when empty")
	flagBaseline   = flag.String("baseline", "", "an earlier report (RESULTS.md) the new-zone rows are compared with")
)

func enabled() bool { return os.Getenv("DNSAGENT_BENCH") == "1" }

func TestMain(m *testing.M) {
	flag.Parse()
	if !enabled() {
		os.Exit(m.Run()) // every test skips: the normal suite stays fast
	}
	if err := checkRelayCPUs(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "dnsagent-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	builtFrom = revision() // now: the work tree may change while the benchmarks run
	agentBin, profBin, err = buildBinaries(dir)
	if err == nil && *flagAgent != "" {
		agentBin, builtFrom = *flagAgent, "`"+*flagAgent+"`"
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func parseSizes(t *testing.T, s string) []int {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10 {
			t.Fatalf("-sizes: %q is not a zone size", f)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

func parseCases(t *testing.T, s string) map[string]bool {
	cases := map[string]bool{}
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !slices.Contains(caseNames, c) {
			t.Fatalf("-cases: %q is not one of %s", c, strings.Join(caseNames, ", "))
		}
		cases[c] = true
	}
	return cases
}

// TestBenchTable runs the whole comparison and prints (and with -out writes) the table.
// It runs only with DNSAGENT_BENCH=1: make bench / make bench-quick.
func TestBenchTable(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1 (make bench, make bench-quick)")
	}
	opt := Options{Sizes: parseSizes(t, *flagSizes), Runs: *flagRuns, LongRun: *flagLongRun,
		NotifyRate: *flagNotifyRate, NotifyFor: *flagNotifyFor, QueryFor: *flagQueryFor, Change: *flagChange,
		Cases: parseCases(t, *flagCases), Many: parseCounts(t, *flagMany),
		ManyParts: parseParts(*flagManyParts), ManyAlso: strings.Split(*flagAlsoAgents, ",")}
	if *flagBaseline != "" {
		var err error
		if opt.Baseline, opt.BaselineFrom, err = readBaseline(*flagBaseline); err != nil {
			t.Fatalf("-baseline: %v", err)
		}
	}
	res := Run(t, opt, agentBin)
	if t.Failed() {
		return
	}
	md := res.Markdown()
	fmt.Println(md)
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	flagProfileSize  = flag.Int("profile-size", 1_000_000, "zone size for TestBenchProfile")
	flagProfileOut   = flag.String("profile-out", "", "directory for the profiles (default: a temp dir)")
	flagProfileCases = flag.String("profile-cases", "file,bind9,powerdns,query,notify", "cases TestBenchProfile profiles")
	flagProfileMD    = flag.String("profile-md", "", "write TestBenchProfile's report to this file too")
)

// TestBenchProfile runs the expensive cases under the profiling build of the agent and
// reports where the CPU time and the heap go (DNSAGENT_BENCH=1).
func TestBenchProfile(t *testing.T) {
	if !enabled() {
		t.Skip("benchmarks run with DNSAGENT_BENCH=1")
	}
	out := *flagProfileOut
	if out == "" {
		out = t.TempDir()
	}
	cases := map[string]bool{}
	for _, c := range strings.Split(*flagProfileCases, ",") {
		cases[strings.TrimSpace(c)] = true
	}
	md := Profile(t, *flagProfileSize, out, cases)
	fmt.Println(md)
	if *flagProfileMD != "" {
		if err := os.WriteFile(*flagProfileMD, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

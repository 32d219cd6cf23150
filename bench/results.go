package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Results holds every sample of a run, by case and size.
type Results struct {
	mu         sync.Mutex
	opt        Options
	Started    time.Time
	LoadStart  string // /proc/loadavg's 1, 5 and 15 minute averages at the start
	Elapsed    time.Duration
	Records    map[int]int // records in the zone (AXFR count, without the closing SOA)
	times      map[string]map[int][]time.Duration
	rss, heap  map[string]map[int][]int64
	rows       map[string]map[int][]int64 // MariaDB rows written per run
	split      map[string]map[int][]lastTransfer
	Notify     []notifyResult
	NotifySize int
	QPS        []qpsResult
	PairRatios []float64 // the agent's 16-client throughput over dnsdist's, round by round
	Many       []manyRow // the many-zones table (manyzones.go)
	Notes      []string
}

func newResults(opt Options) *Results {
	return &Results{opt: opt, Started: time.Now(), LoadStart: loadAvg(), Records: map[int]int{},
		times: map[string]map[int][]time.Duration{}, rss: map[string]map[int][]int64{},
		heap: map[string]map[int][]int64{}, rows: map[string]map[int][]int64{}, split: map[string]map[int][]lastTransfer{}}
}

func addTo[V any](m map[string]map[int][]V, key string, n int, v V) {
	if m[key] == nil {
		m[key] = map[int][]V{}
	}
	m[key][n] = append(m[key][n], v)
}

func (r *Results) add(key string, n int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addTo(r.times, key, n, d)
}

func (r *Results) addMem(key string, n int, rss, heap int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addTo(r.rss, key, n, rss)
	addTo(r.heap, key, n, heap)
}

func (r *Results) addSplit(key string, n int, lt lastTransfer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addTo(r.split, key, n, lt)
}

func (r *Results) addRows(key string, n int, rows int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addTo(r.rows, key, n, rows)
}

// lastSplit is the agent's account of the latest run of a case (zero if none).
func (r *Results) lastSplit(key string, n int) lastTransfer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.split[key][n]; len(l) > 0 {
		return l[len(l)-1]
	}
	return lastTransfer{}
}

func (r *Results) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *Results) median(key string, n int) time.Duration { return median(r.times[key][n]) }
func (r *Results) runs(key string, n int) int             { return len(r.times[key][n]) }

// cell prints a case's median with its ratios to the references given as (label, key)
// pairs; a reference key may be a sum "a+b".
func (r *Results) cell(key string, n int, refs ...[2]string) string {
	d := r.median(key, n)
	if d == 0 {
		return "–"
	}
	s := fmtDur(d)
	if k := r.runs(key, n); k < r.opt.Runs {
		s += fmt.Sprintf(" (%d run)", k)
	}
	var parts []string
	for _, ref := range refs {
		if rd := r.ref(ref[1], n); rd > 0 {
			parts = append(parts, fmtRatio(d, rd)+" "+ref[0])
		}
	}
	if len(parts) > 0 {
		s += "<br>" + strings.Join(parts, ", ")
	}
	if rows := r.rows[key][n]; len(rows) > 0 {
		s += fmt.Sprintf("<br>%d rows written", medianInt(rows))
	}
	return s
}

// ref is the median of a key, or the sum of the medians of "a+b".
// axfrRef is the raw AXFR read a ratio takes, and what its label says of it: the one
// taken again just before each agent's run (key beside), under the load the agents' runs
// met, when there is one; else the limits read at the start.
func (r *Results) axfrRef(beside string, n int) (key, label string) {
	if r.median(beside, n) > 0 {
		return beside, " (read just before each run)"
	}
	return limAXFR, ""
}

func (r *Results) ref(key string, n int) time.Duration {
	var sum time.Duration
	for _, k := range strings.Split(key, "+") {
		d := r.median(k, n)
		if d == 0 {
			return 0
		}
		sum += d
	}
	return sum
}

var (
	refAXFR      = [2]string{"raw AXFR", limAXFR}
	refAXFRBy    = [2]string{"raw AXFR beside it", limAXFRBy}
	refAXFRCheck = [2]string{"AXFR+checkzone", limAXFR + "+" + limCheckzone}
	refAXFRNew   = [2]string{"raw AXFR beside it", limAXFRNew}
	refAXFRNewCh = [2]string{"AXFR beside it+checkzone", limAXFRNew + "+" + limCheckzone}
	refBulk      = [2]string{"bulk load", limBulk}
	refNamedFull = [2]string{"named", peerNamed + ".full"}
	refPDNSFull  = [2]string{"pdns", peerPDNS + ".full"}
	refNamedIXFR = [2]string{"named", peerNamed + ".ixfr"}
	refPDNSIXFR  = [2]string{"pdns IXFR=1", peerPDNS + ".ixfr"}
	refPDNSNoIX  = [2]string{"pdns AXFR", peerPDNSNoIX}
	refFileFull  = [2]string{"own full", agFile + ".full"}
	refReplace   = [2]string{"replace", agPDNSOff}
)

// Markdown renders the whole report.
func (r *Results) Markdown() string {
	var b strings.Builder
	if len(r.opt.Cases) == 1 && r.opt.Cases["many"] {
		return manyMarkdown(r.Many)
	}
	sizes := r.opt.Sizes
	header := func(first string) {
		b.WriteString("| " + first + " |")
		for _, n := range sizes {
			fmt.Fprintf(&b, " %s (%d RRs) |", sizeName(n), r.Records[n])
		}
		b.WriteString("\n|---|")
		for range sizes {
			b.WriteString("---|")
		}
		b.WriteString("\n")
	}
	row := func(label, key string, refs ...[2]string) {
		b.WriteString("| " + label + " |")
		for _, n := range sizes {
			b.WriteString(" " + r.cell(key, n, refs...) + " |")
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "# dnsagent benchmarks\n\n")
	fmt.Fprintf(&b, "%s, %s. Medians of %d runs unless marked; ratios are to the reference in the same run.\n",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), machine(), r.opt.Runs)
	fmt.Fprintf(&b, "Agent built from %s. Whole run: %s; load average at the start %s, at the end %s. "+
		"Reproduce: `make bench` (see bench/README.md).\n\n", builtFrom, fmtDur(r.Elapsed.Round(time.Second)), r.LoadStart, loadAvg())

	b.WriteString("## Full transfer of a new zone\n\n")
	b.WriteString("From CREATE (agent) / `rndc addzone` (named) / domain row + `pdns_control retrieve` (PowerDNS) until the " +
		"target answers the zone's SOA with the serial (file backend: the new file is in place).\n\n")
	header("")
	row("limit: raw AXFR read (miekg/dns, discarded)", limAXFR)
	row("limit: raw AXFR read, again just before each file and bind9 agent's run", limAXFRNew)
	row("limit: named-checkzone of the zone file", limCheckzone)
	row("limit: bulk load, 1000-row INSERTs, one transaction", limBulk)
	row("peer: named, type secondary", peerNamed+".full")
	row("peer: pdns_server, secondary (SLAVE)", peerPDNS+".full")
	row("**agent + file**", agFile+".full", refAXFR, refAXFRNew, refNamedFull)
	row("**agent + bind9 (reload mode)**", agReload+".full", refAXFRCheck, refAXFRNewCh, refNamedFull)
	row("**agent + bind9 (update mode)**", agUpdate+".full", refAXFRCheck, refAXFRNewCh, refNamedFull)
	row("**agent + powerdns**", agPDNS+".full", refBulk, refPDNSFull)

	fmt.Fprintf(&b, "\n## %d-record change (IXFR)\n\n", 2*r.opt.Change)
	fmt.Fprintf(&b, "The primary (BIND, ixfr-from-differences) deletes %d generated records and adds %d; from the NOTIFY "+
		"sent to the target until it answers the new serial.\n\n", r.opt.Change, r.opt.Change)
	header("")
	row("peer: named, type secondary (IXFR)", peerNamed+".ixfr")
	row("peer: pdns_server, IXFR=1 metadata", peerPDNS+".ixfr")
	row("peer: pdns_server, no IXFR metadata (AXFR)", peerPDNSNoIX)
	row("**agent + file**", agFile+".ixfr", refFileFull)
	row("**agent + bind9 (reload mode)**", agReload+".ixfr", refNamedIXFR)
	row("**agent + bind9 (update mode)**", agUpdate+".ixfr", refNamedIXFR)
	row("**agent + powerdns**", agPDNS+".ixfr", refPDNSIXFR, refPDNSNoIX)

	fmt.Fprintf(&b, "\n## %d-record change delivered as a full zone (issue 13)\n\n", 2*r.opt.Change)
	fmt.Fprintf(&b, "What a Designate pool produces: the primary (BIND) runs with `provide-ixfr no;`, so it answers every IXFR "+
		"with the whole zone, as MiniDNS does; it deletes %d generated records and adds %d, and from the NOTIFY sent to the "+
		"target until it answers the new serial (file backend: the new file in place). Ratios to the raw AXFR read of the "+
		"same zone above, to the same read repeated just before each agent's run (the median of those: the same load on "+
		"a shared machine; issue 13's targets use it) and, for powerdns, to the same agent applying the same change with its diff index off "+
		"(`diff_index_dir` empty: the full replace it did before issue 13), in this run. Rows written: the MariaDB server's "+
		"`Handler_write + Handler_delete + Handler_update` (SHOW GLOBAL STATUS) after minus before, median of the runs.\n\n",
		r.opt.Change, r.opt.Change)
	header("")
	row("limit: raw AXFR read (miekg/dns, discarded)", limAXFR)
	row("limit: raw AXFR read, again just before each agent's run", limAXFRBy)
	row("peer: named, type secondary", peerNamed+fullZone, refAXFR)
	row("peer: named, type secondary, ixfr-from-differences", peerNamedIXD+fullZone, refAXFR)
	row("peer: pdns_server, secondary (AXFR)", peerPDNS+fullZone, refAXFR)
	row("**agent + file**", agFile+fullZone, refAXFR, refAXFRBy)
	row("**agent + bind9 (reload mode)**", agReload+fullZone, refAXFR, refAXFRBy)
	row("**agent + bind9 (update mode)**", agUpdate+fullZone, refAXFR, refAXFRBy)
	row("**agent + powerdns**", agPDNS+fullZone, refAXFR, refAXFRBy, refReplace)
	row("agent + powerdns, diff index off (full replace)", agPDNSOff, refAXFR)

	b.WriteString("\n## Agent memory and its own account of the time\n\n")
	b.WriteString("Peak RSS (VmHWM, reset before each case) and peak Go heap in use (`go_memstats_heap_inuse_bytes` " +
		"scraped every 50 ms), the largest over the runs; transfer / apply time as the agent reports them " +
		"(`/zones/NAME`: waiting for the primary / working in the backend), medians; how the last run's transfer was " +
		"applied (`apply`: create, ixfr, diff with records deleted/added, replace).\n\n")
	header("case")
	for _, c := range []struct{ label, key string }{
		{"file, full", agFile + ".full"}, {"file, change", agFile + ".ixfr"},
		{"bind9 reload, full", agReload + ".full"}, {"bind9 reload, change", agReload + ".ixfr"},
		{"bind9 update, full", agUpdate + ".full"}, {"bind9 update, change", agUpdate + ".ixfr"},
		{"powerdns, full", agPDNS + ".full"}, {"powerdns, change", agPDNS + ".ixfr"},
		{"file, change as full zone", agFile + fullZone}, {"bind9 reload, change as full zone", agReload + fullZone},
		{"bind9 update, change as full zone", agUpdate + fullZone}, {"powerdns, change as full zone", agPDNS + fullZone},
		{"powerdns, change as full zone, diff index off", agPDNSOff},
	} {
		b.WriteString("| " + c.label + " |")
		for _, n := range sizes {
			b.WriteString(" " + r.memCell(c.key, n) + " |")
		}
		b.WriteString("\n")
	}

	if len(r.Notify) > 0 {
		fmt.Fprintf(&b, "\n## NOTIFY acknowledgement latency\n\n")
		fmt.Fprintf(&b, "NOTIFYs (Designate's format) for %d small zones the agent (file backend) holds, from an allowed "+
			"source, offered open-loop; rate limiter off.\n\n", len(notifyZones))
		b.WriteString("| condition | offered | answered | dropped at the agent's socket | p50 | p99 | max | transfers completed meanwhile |\n|---|---|---|---|---|---|---|---|\n")
		for _, n := range r.Notify {
			fmt.Fprintf(&b, "| %s | %d/s for %s | %d / %d | %d | %s | %s | %s | %d |\n", n.Condition, n.Rate, fmtDur(n.Duration),
				n.Answered, n.Sent, n.Dropped, fmtDur(n.P50), fmtDur(n.P99), fmtDur(n.Max), n.TransfersCompleted)
		}
		b.WriteString("\nUnanswered NOTIFYs are left out of the percentiles; \"dropped\" counts the datagrams the kernel threw " +
			"away because the agent's UDP receive buffer was full (`/proc/net/udp`).\n")
	}
	if len(r.QPS) > 0 {
		fmt.Fprintf(&b, "\n## Query passthrough\n\n")
		fmt.Fprintf(&b, "Closed loop UDP clients (each waits for its answer), names of the %s zone, %s per path; the agent "+
			"relays to the same named (bind9 backend), and so does dnsdist (no packet cache); the paths take turns, "+
			"median of the runs. Errors: no answer within 1 s, or an answer other than NOERROR (every name asked exists); "+
			"only NOERROR answers count in queries/s.\n\n", sizeName(sizes[0]), fmtDur(r.opt.QueryFor))
		b.WriteString("| clients | path | queries/s | p50 | p99 | errors | ratio |\n|---|---|---|---|---|---|---|\n")
		var direct float64
		for _, q := range r.QPS {
			if q.Path == pathDirect {
				direct = q.QPS()
			}
			fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %d | %.2f× |\n", q.Clients, q.Path, q.QPS(), fmtDur(q.P50), fmtDur(q.P99), q.Errors, q.QPS()/direct)
		}
	}

	checks := func(title string, cs []Check) {
		if len(cs) == 0 {
			return
		}
		b.WriteString("\n## " + title + "\n\n")
		b.WriteString("| target | measured | verdict |\n|---|---|---|\n")
		for _, c := range cs {
			verdict := "**missed**"
			if c.Met {
				verdict = "met"
			}
			if c.Info {
				verdict = "reported"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Target, c.Measured, verdict)
		}
	}
	b.WriteString(manyMarkdown(r.Many))
	checks("Targets (tracker issue 8)", r.Targets())
	checks("Targets (issue 13: a full zone costs only its difference)", r.Targets13())
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

func (r *Results) memCell(key string, n int) string {
	rss, heap := maxInt(r.rss[key][n]), maxInt(r.heap[key][n])
	if rss == 0 && heap == 0 {
		return "–"
	}
	s := fmt.Sprintf("RSS %s, heap %s", fmtMiB(rss), fmtMiB(heap))
	var tr, ap []time.Duration
	for _, lt := range r.split[key][n] {
		tr = append(tr, time.Duration(lt.Transfer))
		ap = append(ap, time.Duration(lt.Apply))
	}
	if len(tr) > 0 {
		s += fmt.Sprintf("<br>transfer %s / apply %s", fmtDur(median(tr)), fmtDur(median(ap)))
	}
	if l := r.split[key][n]; len(l) > 0 && l[len(l)-1].Path != "" {
		lt := l[len(l)-1]
		s += "<br>apply " + lt.Path
		if lt.Path == "diff" {
			s += fmt.Sprintf(" −%d +%d", lt.Deleted, lt.Added)
		} else if lt.PathReason != "" && lt.Path != "create" && lt.Path != "ixfr" {
			s += " (" + lt.PathReason + ")"
		}
	}
	return s
}

// Check is one target of the issue and how it fared.
type Check struct {
	Target, Measured string
	Met, Info        bool
}

// Targets evaluates the targets at 100k and 1M; sizes not in the run are
// skipped, and a run with neither (bench-quick) evaluates them at its largest size.
func (r *Results) Targets() []Check {
	big := []int{}
	for _, n := range r.opt.Sizes {
		if n >= 100_000 {
			big = append(big, n)
		}
	}
	largest := r.opt.Sizes[len(r.opt.Sizes)-1]
	if len(big) == 0 {
		big = []int{largest}
	}
	var cs []Check
	ratio := func(target, key, ref string, limit float64, n int) {
		d, rd := r.median(key, n), r.ref(ref, n)
		if d == 0 || rd == 0 {
			return
		}
		x := float64(d) / float64(rd)
		cs = append(cs, Check{Target: fmt.Sprintf("%s, %s: ≤ %.1f×", target, sizeName(n), limit),
			Measured: fmt.Sprintf("%s / %s = %.2f×", fmtDur(d), fmtDur(rd), x), Met: x <= limit})
	}
	for _, n := range big {
		axfr, beside := r.axfrRef(limAXFRNew, n)
		ratio("Full transfer, file ≤ 1.2 × raw AXFR read"+beside, agFile+".full", axfr, 1.2, n)
		ratio("Full transfer, bind9 (reload mode) ≤ 1.2 × (raw AXFR + named-checkzone)"+beside, agReload+".full", axfr+"+"+limCheckzone, 1.2, n)
		ratio("Full transfer, bind9 (update mode) ≤ 1.2 × (raw AXFR + named-checkzone)"+beside, agUpdate+".full", axfr+"+"+limCheckzone, 1.2, n)
		ratio("Full transfer, powerdns ≤ 1.5 × bulk load", agPDNS+".full", limBulk, 1.5, n)
	}
	if d := r.median(agUpdate+".ixfr", largest); d > 0 {
		cs = append(cs, Check{Target: fmt.Sprintf("Change in a %s zone, bind9 update mode ≤ 50 ms", sizeName(largest)),
			Measured: fmtDur(d), Met: d <= 50*time.Millisecond})
	}
	ratio("Change, powerdns ≤ 0.1 × PowerDNS's own IXFR (IXFR=1)", agPDNS+".ixfr", peerPDNS+".ixfr", 0.1, largest)
	ratio("Change, file ≤ the file backend's full transfer", agFile+".ixfr", agFile+".full", 1.0, largest)
	if h := maxInt(r.heap[agFile+".full"][largest]); h > 0 {
		cs = append(cs, Check{Target: fmt.Sprintf("Peak Go heap, file backend, %s full transfer ≤ 64 MiB", sizeName(largest)),
			Measured: fmtMiB(h), Met: h <= 64<<20})
	}
	if h := maxInt(r.heap[agPDNS+".full"][largest]); h > 0 {
		cs = append(cs, Check{Target: fmt.Sprintf("Peak Go heap, powerdns backend, %s full transfer", sizeName(largest)),
			Measured: fmt.Sprintf("%s (RSS %s)", fmtMiB(h), fmtMiB(maxInt(r.rss[agPDNS+".full"][largest]))), Info: true})
	}
	cs = append(cs, r.passthroughTargets()...)
	for _, n := range r.Notify {
		if !n.DuringTransfer {
			continue
		}
		lost := n.Sent - n.Answered
		cs = append(cs, Check{Target: fmt.Sprintf("NOTIFY ack p99 ≤ 10 ms at %d/s during %s transfers", n.Rate, sizeName(r.NotifySize)),
			Measured: fmt.Sprintf("p99 %s (p50 %s), %d unanswered of %d (%d dropped at the agent's socket)", fmtDur(n.P99), fmtDur(n.P50), lost, n.Sent, n.Dropped),
			Met:      n.P99 <= 10*time.Millisecond && lost*100 < n.Sent})
	}
	return cs
}

// machine describes the host: CPUs, CPU model, memory, kernel and the servers' versions.
func machine() string {
	model, mem := "", ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok && model == "" {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(v), &kb)
				mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
			}
		}
		f.Close()
	}
	version := func(bin string, args ...string) string {
		p := harness.LookPath(bin)
		if p == "" {
			return bin + " ?"
		}
		out, _ := exec.Command(p, args...).CombinedOutput()
		line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		return line
	}
	pdns := version("pdns_server", "--version")
	if i := strings.Index(pdns, "PowerDNS"); i >= 0 {
		pdns = pdns[i:]
		if j := strings.Index(pdns, " (C)"); j >= 0 {
			pdns = pdns[:j]
		}
	}
	named := version("named", "-v")
	if i := strings.Index(named, " ("); i >= 0 {
		named = named[:i]
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s, %s, %s, %s, %s", runtime.NumCPU(), model, mem, runtime.Version(),
		named, pdns, version("mariadbd", "--version"), version("dnsdist", "--version"))
}

// builtFrom is the revision the measured agent was built from (revision at build time).
var builtFrom = "an unknown revision"

// revision names the source the agent was built from (git describe, "-dirty" when the work
// tree had changes).
func revision() string {
	root, err := moduleRoot()
	if err != nil {
		return "an unknown revision"
	}
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "an unknown revision"
	}
	return "`" + strings.TrimSpace(string(out)) + "`"
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " / ")
	}
	return "?"
}

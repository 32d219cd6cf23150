package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// baselineSlack is how much slower than the baseline report a new-zone row may be and
// still count as "not slower": the two runs are on shared cores at different loads.
const baselineSlack = 1.10

// Targets13 evaluates issue 13's targets at the run's largest size.
func (r *Results) Targets13() []Check {
	n := r.opt.Sizes[len(r.opt.Sizes)-1]
	sz := sizeName(n)
	var cs []Check
	ratio := func(target, key, ref string, limit float64) {
		d, rd := r.median(key, n), r.ref(ref, n)
		if d == 0 || rd == 0 {
			return
		}
		x := float64(d) / float64(rd)
		cs = append(cs, Check{Target: fmt.Sprintf("%s, %s: ≤ %.1f×", target, sz, limit),
			Measured: fmt.Sprintf("%s / %s = %.2f×", fmtDur(d), fmtDur(rd), x), Met: x <= limit})
	}
	axfr, beside := r.axfrRef(limAXFRBy, n)
	ratio("10-record change as a full zone → served, powerdns ≤ 1.5 × raw AXFR read"+beside, agPDNS+fullZone, axfr, 1.5)
	if d, rd := r.median(agPDNS+fullZone, n), r.median(agPDNSOff, n); d > 0 && rd > 0 {
		x := float64(rd) / float64(d)
		cs = append(cs, Check{Target: fmt.Sprintf("10-record change as a full zone, powerdns ≥ 10 × faster than its full replace (index off, same run), %s", sz),
			Measured: fmt.Sprintf("%s vs %s = %.1f× faster", fmtDur(d), fmtDur(rd), x), Met: x >= 10})
	}
	ratio("10-record change as a full zone → served, bind9 update mode ≤ 1.3 × raw AXFR read"+beside, agUpdate+fullZone, axfr, 1.3)
	ratio("10-record change as a full zone → served, file ≤ 1.2 × raw AXFR read"+beside, agFile+fullZone, axfr, 1.2)
	if d, rd := r.median(agReload+fullZone, n), r.median(axfr, n); d > 0 && rd > 0 {
		cs = append(cs, Check{Target: fmt.Sprintf("10-record change as a full zone → served, bind9 reload mode, %s (no target: named reloads the whole file)", sz),
			Measured: fmt.Sprintf("%s / %s = %.2f× raw AXFR read", fmtDur(d), fmtDur(rd), float64(d)/float64(rd)), Info: true})
	}
	for _, c := range []struct{ label, key string }{{"file", agFile}, {"bind9 reload", agReload}, {"bind9 update", agUpdate}, {"powerdns", agPDNS}} {
		if d, rd := r.median(cpuKey+c.key+fullZone, n), r.median(cpuKey+limAXFRBy, n); d > 0 && rd > 0 {
			cs = append(cs, Check{Target: fmt.Sprintf("CPU time, %s, 10-record change as a full zone, until served (the agent's, /proc/PID/stat, 10 ms ticks) / the raw AXFR read's, %s", c.label, sz),
				Measured: fmt.Sprintf("%s / %s = %.2f×", fmtDur(d), fmtDur(rd), float64(d)/float64(rd)), Info: true})
		}
	}
	if rows := r.rows[agPDNS+fullZone][n]; len(rows) > 0 {
		m := maxInt(rows)
		cs = append(cs, Check{Target: fmt.Sprintf("10-record change as a full zone, powerdns: MariaDB rows written ≤ 50, %s", sz),
			Measured: fmt.Sprintf("%d (largest of %d runs; PowerDNS's own secondary: %d, the agent's full replace: %d)", m, len(rows),
				medianInt(r.rows[peerPDNS+fullZone][n]), medianInt(r.rows[agPDNSOff][n])), Met: m <= 50})
	}
	for _, c := range []struct{ label, key string }{{"file", agFile}, {"bind9 reload", agReload}, {"bind9 update", agUpdate}, {"powerdns", agPDNS}} {
		if rss := maxInt(r.rss[c.key+fullZone][n]); rss > 0 {
			cs = append(cs, Check{Target: fmt.Sprintf("Peak RSS, %s, 10-record change as a full %s zone ≤ 64 MiB", c.label, sz),
				Measured: fmt.Sprintf("%s (Go heap %s)", fmtMiB(rss), fmtMiB(maxInt(r.heap[c.key+fullZone][n]))), Met: rss <= 64<<20})
		}
	}
	if d := r.median(agPDNS+".ixfr", n); d > 0 {
		rd := r.median(peerPDNS+".ixfr", n)
		cs = append(cs, Check{Target: fmt.Sprintf("powerdns 10-record IXFR, %s: ≤ 0.1 × PowerDNS's own IXFR path (≤ 70 ms)", sz),
			Measured: fmt.Sprintf("%s / %s = %s", fmtDur(d), fmtDur(rd), fmtRatio(d, rd)),
			Met:      d <= 70*time.Millisecond && (rd == 0 || float64(d) <= 0.1*float64(rd))})
	}
	for _, c := range []struct{ label, key string }{{"file", agFile}, {"bind9 (reload mode)", agReload},
		{"bind9 (update mode)", agUpdate}, {"powerdns", agPDNS}} {
		for _, m := range r.opt.Sizes {
			d, old := r.median(c.key+".full", m), r.opt.Baseline[c.key+".full"][m]
			if d == 0 || old == 0 {
				continue
			}
			x := float64(d) / float64(old)
			measured := fmt.Sprintf("%s / %s = %.2f×", fmtDur(d), fmtDur(old), x)
			if a, olda := r.median(limAXFR, m), r.opt.Baseline[limAXFR][m]; a > 0 && olda > 0 {
				measured += fmt.Sprintf(" (raw AXFR read: %s / %s = %.2f×)", fmtDur(a), fmtDur(olda), float64(a)/float64(olda))
			}
			cs = append(cs, Check{Target: fmt.Sprintf("Full transfer of a new zone, agent + %s, %s: not slower than %s (≤ %.2f× for noise)",
				c.label, sizeName(m), r.opt.BaselineFrom, baselineSlack), Measured: measured, Met: x <= baselineSlack})
		}
	}
	return cs
}

// baselineRows maps the labels of the new-zone table of a report to case keys.
var baselineRows = []struct{ prefix, key string }{
	{"limit: raw AXFR read (", limAXFR}, // not the row of the reads again before each run
	{"**agent + file**", agFile + ".full"},
	{"**agent + bind9 (reload mode)**", agReload + ".full"},
	{"**agent + bind9 (update mode)**", agUpdate + ".full"},
	{"**agent + powerdns**", agPDNS + ".full"},
}

// readBaseline reads the "Full transfer of a new zone" medians of an earlier report
// (RESULTS.md as Markdown renders it) and names the run it came from.
func readBaseline(path string) (map[string]map[int]time.Duration, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	text := string(data)
	from := "the previous " + filepath.Base(path)
	if _, rest, ok := strings.Cut(text, "Agent built from "); ok {
		from += " (agent built from " + strings.SplitN(rest, ".", 2)[0] + ")"
	}
	_, section, ok := strings.Cut(text, "## Full transfer of a new zone")
	if !ok {
		return nil, "", fmt.Errorf("%s: no \"Full transfer of a new zone\" table", path)
	}
	section, _, _ = strings.Cut(section, "\n#") // up to the next heading, of any level
	var sizes []int
	out := map[string]map[int]time.Duration{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if sizes == nil {
			for _, c := range cells[1:] {
				n, err := parseSizeName(strings.Fields(c)[0])
				if err != nil {
					return nil, "", fmt.Errorf("%s: table header: %v", path, err)
				}
				sizes = append(sizes, n)
			}
			continue
		}
		for _, br := range baselineRows {
			if !strings.HasPrefix(cells[0], br.prefix) {
				continue
			}
			for i, c := range cells[1:] {
				if i >= len(sizes) {
					break
				}
				first, _, _ := strings.Cut(c, "<br>")
				if d, err := parseDur(first); err == nil {
					if out[br.key] == nil {
						out[br.key] = map[int]time.Duration{}
					}
					out[br.key][sizes[i]] = d
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, "", fmt.Errorf("%s: no agent rows in the new-zone table", path)
	}
	return out, from, nil
}

// parseSizeName is the inverse of sizeName: 10k, 1M, 500.
func parseSizeName(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "M"):
		mult, s = 1_000_000, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "k"):
		mult, s = 1000, strings.TrimSuffix(s, "k")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

// parseDur reads what fmtDur prints ("2.44 s", "266 ms", "876 µs", "189 s (1 run)").
func parseDur(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	unit := map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "µs": time.Microsecond}[f[1]]
	if unit == 0 {
		return 0, fmt.Errorf("%q: unknown unit", s)
	}
	return time.Duration(v * float64(unit)), nil
}

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadBaseline reads the new-zone medians from a report as Markdown renders it.
func TestReadBaseline(t *testing.T) {
	report := "# dnsagent benchmarks\n\nAgent built from `abc123`. Whole run: 864 s.\n\n" +
		"## Full transfer of a new zone\n\ntext\n\n" +
		"|  | 10k (11253 RRs) | 1M (1125003 RRs) |\n|---|---|---|\n" +
		"| limit: raw AXFR read (miekg/dns, discarded) | 27 ms | 2.00 s |\n" +
		"| limit: raw AXFR read, again just before each file and bind9 agent's run | 29 ms | 2.10 s |\n" +
		"| **agent + file** | 31 ms<br>1.16× raw AXFR | 2.44 s<br>1.22× raw AXFR |\n" +
		"| **agent + powerdns** | 876 µs | 189 s (1 run) |\n\n" +
		"## 10-record change (IXFR)\n\n|  | 10k | 1M |\n|---|---|---|\n| **agent + file** | 9.79 ms | 415 ms |\n"
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	b, from, err := readBaseline(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int]time.Duration{
		limAXFR:          {10000: 27 * time.Millisecond, 1000000: 2 * time.Second},
		agFile + ".full": {10000: 31 * time.Millisecond, 1000000: 2440 * time.Millisecond},
		agPDNS + ".full": {10000: 876 * time.Microsecond, 1000000: 189 * time.Second},
	}
	for k, m := range want {
		for n, d := range m {
			if got := b[k][n]; got.Round(time.Microsecond) != d {
				t.Errorf("%s at %d: %v, want %v", k, n, got, d)
			}
		}
	}
	if len(b) != len(want) {
		t.Errorf("rows %v, want only the new-zone table's %d", b, len(want))
	}
	if from != "the previous RESULTS.md (agent built from `abc123`)" {
		t.Errorf("from %q", from)
	}
}

// The new-zone targets against the raw read use the reads taken just before each agent's
// run when the run has them (the same load), and say so; else the limits read at the start.
func TestFullTransferTargetTakesTheReadBeside(t *testing.T) {
	const n = 1_000_000
	const target = "Full transfer, file ≤ 1.2 × raw AXFR read"
	find := func(r *Results) Check {
		for _, c := range r.Targets() {
			if strings.HasPrefix(c.Target, target) {
				return c
			}
		}
		t.Fatal("no file full-transfer target")
		return Check{}
	}
	r := newResults(Options{Sizes: []int{n}})
	r.add(limAXFR, n, 1500*time.Millisecond)
	for _, d := range []time.Duration{1840, 1900, 1860} {
		r.add(agFile+".full", n, d*time.Millisecond)
	}
	if c := find(r); c.Met || c.Target != target+", 1M: ≤ 1.2×" {
		t.Errorf("without reads beside: %+v; want the start read's ratio (1.24×), missed", c)
	}
	for _, d := range []time.Duration{1790, 1830, 1810} {
		r.add(limAXFRNew, n, d*time.Millisecond)
	}
	if c := find(r); !c.Met || c.Target != target+" (read just before each run), 1M: ≤ 1.2×" ||
		c.Measured != "1.86 s / 1.81 s = 1.03×" {
		t.Errorf("with reads beside: %+v; want 1.86 s / 1.81 s, met", c)
	}
}

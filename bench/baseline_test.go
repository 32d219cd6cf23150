package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReadBaseline reads the new-zone medians from a report as Markdown renders it.
func TestReadBaseline(t *testing.T) {
	report := "# dnsagent benchmarks\n\nAgent built from `abc123`. Whole run: 864 s.\n\n" +
		"## Full transfer of a new zone\n\ntext\n\n" +
		"|  | 10k (11253 RRs) | 1M (1125003 RRs) |\n|---|---|---|\n" +
		"| limit: raw AXFR read (miekg/dns, discarded) | 27 ms | 2.00 s |\n" +
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

package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// TestDemo is issue 16 acceptance 5: `make demo` (scripts/demo.sh) runs to the end in
// under a minute, its output shows the CREATE reply, the zone file's SOA and the IXFR
// transfer line, and it leaves no process running and no temp directory behind.
func TestDemo(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "dig", "curl", "ss")
	bin := harness.AgentBinary(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/demo.sh", bin)
	// Ports from the harness, so no parallel test's server takes one meanwhile.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp,
		fmt.Sprintf("DEMO_PORTS=%d %d %d", harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)))
	start := time.Now()
	raw, err := cmd.CombinedOutput()
	took, out := time.Since(start), string(raw)
	if err != nil {
		t.Fatalf("demo failed after %v: %v\n%s", took, err, out)
	}
	t.Logf("demo ran in %v", took)
	if took > time.Minute {
		t.Errorf("demo took %v, want under a minute", took)
	}
	for what, re := range map[string]string{
		"the CREATE reply":         `(?m)^;; opcode: CC, status: NOERROR, id: \d+\n;; flags: qr aa;`,
		"the zone file's SOA":      `(?m)^SOA in the file: demo\.example\.\t3600\tIN\tSOA\tns1\.demo\.example\. hostmaster\.demo\.example\. 1 `,
		"the IXFR transfer line":   `(?m)^.*\btransfer\b.*"type": "IXFR", "serial_from": 1, "serial_to": 2,.*"result": "applied"`,
		"the new serial in a file": `(?m)^SOA in the file: .* 2 3600 600 86400 300$`,
		"/zones/NAME":              `"applied_serial": 2,\s+"primary_serial": 2`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("the demo's output does not show %s (%s):\n%s", what, re, out)
		}
	}
	if t.Failed() {
		return
	}
	// Nothing it started runs on: no process has the demo's temp dir in its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), tmp) {
			t.Errorf("still running after the demo: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the demo left %d entries in its temp dir (%s...)", len(left), left[0].Name())
	}
}

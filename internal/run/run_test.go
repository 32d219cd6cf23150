package run

import (
	"strings"
	"testing"
	"time"
)

// Output is kept on one line and bounded, whatever the command prints.
func TestCommandOutput(t *testing.T) {
	out, err := Command(t.Context(), 5*time.Second, []string{"sh", "-c", "echo 'not\n  found' >&2; exit 3"})
	if err == nil || out != "not found" {
		t.Errorf("got %q, %v; want the output on one line and the exit status", out, err)
	}
	out, err = Command(t.Context(), 5*time.Second, []string{"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; exit 1"})
	if err == nil || len(out) > MaxOutput+len(" [...]") || !strings.HasSuffix(out, "[...]") {
		t.Errorf("100000 bytes of output kept as %d bytes (%v)", len(out), err)
	}
}

// A command past its timeout is killed, and a child holding its output does not hold the
// caller past the wait delay.
func TestCommandTimeout(t *testing.T) {
	start := time.Now()
	_, err := Command(t.Context(), 200*time.Millisecond, []string{"sh", "-c", "sleep 30 & sleep 30"})
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "timed out after 200ms") || took > 5*time.Second {
		t.Errorf("after %v: %v; want a timeout within the wait delay", took, err)
	}
}

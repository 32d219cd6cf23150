package harness

import (
	"fmt"
	"strings"
	"testing"
)

// A Buffer that overflows keeps its head and tail, and the warnings and errors of the
// middle, so a long run's failure still shows.
func TestBufferKeepsWarningsFromTheMiddle(t *testing.T) {
	b := NewBuffer(4096)
	for i := range 1000 {
		level := "INFO"
		switch i {
		case 400:
			level = "WARN"
		case 600:
			level = "ERROR"
		}
		fmt.Fprintf(b, "2026-12-05T09:04:12.080Z\t%s\trequest\tline %d\n", level, i)
	}
	out := b.String()
	for _, want := range []string{"\tINFO\trequest\tline 0\n", "\tWARN\trequest\tline 400\n", "\tERROR\trequest\tline 600\n", "\tINFO\trequest\tline 999\n", "bytes dropped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "line 500\n") || len(out) > 4096+200 {
		t.Errorf("kept more than the head, the tail and the warnings (%d bytes):\n%s", len(out), out)
	}
}

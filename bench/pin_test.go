package bench

import (
	"slices"
	"testing"
)

// -relay-cpus takes taskset's list form; anything else is refused before a bench starts.
func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"1": {1}, "0-2,5": {0, 1, 2, 5}, "3-3": {3}} {
		got, err := parseCPUList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "2-1", "-1", "1,", "1-x"} {
		if got, err := parseCPUList(in); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", in, got)
		}
	}
}

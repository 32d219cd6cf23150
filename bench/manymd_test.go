package bench

import (
	"strings"
	"testing"
	"time"
)

// The file target names the agent's rate against the files alone of the same run, and
// its verdict stays the absolute target's.
func TestManyFileTargetShowsTheFloor(t *testing.T) {
	rows := []manyRow{
		{Who: "files alone: each zone's file (fsync), no DNS", Zones: 1000, Took: 400 * time.Millisecond, Served: 1000},
		{Who: "agent, file", Zones: 1000, Took: time.Second, Served: 1000},
	}
	md := manyMarkdown(rows)
	if want := "| file ≥ 2,000 zones/s (1000 zones) | 1000 zones/s (0.40× the files alone: 2500 zones/s) | **missed** |"; !strings.Contains(md, want) {
		t.Errorf("table lacks %q:\n%s", want, md)
	}
	md = manyMarkdown(rows[1:])
	if want := "| file ≥ 2,000 zones/s (1000 zones) | 1000 zones/s | **missed** |"; !strings.Contains(md, want) {
		t.Errorf("without the floor, table lacks %q:\n%s", want, md)
	}
}

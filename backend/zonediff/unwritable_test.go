package zonediff_test

import (
	"strings"
	"syscall"
	"testing"

	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

// The index directory stops taking writes (a full disk, a read-only remount) while a held
// zone's index can still be read. The full zone that needs a new index file fails, and
// drops the index; the next one is a replace, which does not need it, and the zone moves
// on. Kept, the index failed every full zone of the zone for good. Writes are refused by
// RLIMIT_FSIZE (root ignores permissions); the test is not parallel, and puts the limit
// back.
func TestIndexWriteFailureDoesNotStopTheZone(t *testing.T) {
	b := memory.New() // writes no file of its own: only the index's meet the limit
	idx, err := zonediff.Open(t.TempDir(), zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := idx.Full(t.Context(), b, zone, false, 0, version(1)); err != nil || res.Apply != "create" || res.IndexErr != "" {
		t.Fatalf("create: %+v %v", res, err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := old
	limit.Cur = 64 // the new index file's writes fail past 64 bytes
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	_, err = idx.Full(t.Context(), b, zone, true, 1, version(40)) // 39 records added
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), "the index is dropped") {
		t.Fatalf("full zone while the index cannot be written: %v, want a failure that drops the index", err)
	}
	if serial, err := b.Serial(t.Context(), zone); err != nil || serial != 1 {
		t.Fatalf("after the failure the backend holds %d (%v), want the old version, 1", serial, err)
	}
	res, err := idx.Full(t.Context(), b, zone, true, 1, version(40))
	if err != nil || res.Apply != "replace" {
		t.Fatalf("the next full zone: %+v, %v; want a replace", res, err)
	}
	if serial, _ := b.Serial(t.Context(), zone); serial != 40 {
		t.Fatalf("backend at %d after the replace, want 40", serial)
	}
}

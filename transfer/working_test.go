package transfer

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/dnsagent/dnsagent/backend/memory"
)

// Config.Working hears of every piece of work on a zone (a CREATE's check, a verify, a
// resync, a delete) as it begins, and each one ends, failed ones too (a zone the primary
// does not serve): none is left running.
func TestWorkingBracketsZoneWork(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 100)
	var mu sync.Mutex
	running, began := 0, 0
	working := func() func() {
		mu.Lock()
		defer mu.Unlock()
		running++
		began++
		return func() {
			mu.Lock()
			defer mu.Unlock()
			running--
		}
	}
	m, _ := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, Working: working}, memory.New())
	ctx := context.Background()
	for _, step := range []struct {
		what  string
		do    func() error
		fails bool
	}{
		{"CREATE of a zone the primary does not serve", func() error { return m.Create(ctx, "other.org.") }, true},
		{"CREATE", func() error { return m.Create(ctx, "example.com.") }, false},
		{"verify", func() error { _, err := m.Verify(ctx, "example.com."); return err }, false},
		{"resync", func() error { _, _, err := m.Resync(ctx, "example.com."); return err }, false},
		{"DELETE", func() error { return m.Delete(ctx, "example.com.") }, false},
	} {
		mu.Lock()
		before := began
		mu.Unlock()
		if err := step.do(); (err != nil) != step.fails {
			t.Fatalf("%s: error %v, want one: %v", step.what, err, step.fails)
		}
		mu.Lock()
		if began == before || running != 0 {
			t.Errorf("%s: %d pieces of work began, %d still running; want at least one, none", step.what, began-before, running)
		}
		mu.Unlock()
	}
}

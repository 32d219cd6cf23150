package transfer

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/dnsagent/dnsagent/backend/memory"
)

// Config.Working hears of every piece of work on a zone (a CREATE's check, a verify, a
// resync, a delete) as it begins, and each one ends: none is left running.
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
		what string
		do   func() error
	}{
		{"CREATE", func() error { return m.Create(ctx, "example.com.") }},
		{"verify", func() error { _, err := m.Verify(ctx, "example.com."); return err }},
		{"resync", func() error { _, _, err := m.Resync(ctx, "example.com."); return err }},
		{"DELETE", func() error { return m.Delete(ctx, "example.com.") }},
	} {
		mu.Lock()
		before := began
		mu.Unlock()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		mu.Lock()
		if began == before || running != 0 {
			t.Errorf("%s: %d pieces of work began, %d still running; want at least one, none", step.what, began-before, running)
		}
		mu.Unlock()
	}
}

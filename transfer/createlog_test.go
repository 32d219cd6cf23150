package transfer

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A failed CREATE makes one warning, with the cause: the check's line. The failed
// transfer's summary goes to debug, and Create's error says the engine logged it
// (ErrCheckFailed), so the request's line need not.
func TestFailedCreateLoggedOnce(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 200)
	p.set(func(p *fakePrimary) { p.cut = true })
	core, logs := observer.New(zapcore.DebugLevel)
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 1, DialTimeout: time.Second, StallTimeout: 2 * time.Second,
		RetryMin: time.Minute}, memory.New(), zap.New(core))
	err := m.Create(context.Background(), "example.com.")
	m.Close() // the check's line is written once the job ends
	if err == nil || !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("Create = %v, want a failure carrying ErrCheckFailed", err)
	}
	var warnings []observer.LoggedEntry
	transfers := 0
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			warnings = append(warnings, e)
		}
		if e.Message == "transfer" {
			transfers++
		}
	}
	if transfers == 0 {
		t.Errorf("no transfer summary at all (debug): the test did not reach a transfer")
	}
	if len(warnings) != 1 || warnings[0].Message != "zone check failed" || warnings[0].ContextMap()["error"] != err.Error() {
		t.Fatalf("warnings %+v; want one \"zone check failed\" saying %q", warnings, err)
	}
}

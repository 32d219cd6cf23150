package transfer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/backend/zonediff"
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

// A zone applied without its diff index (the index's directory gone) is served, and the
// transfer's line says why it has no index, at warn: the directory wants a look.
func TestIndexNotWrittenLogged(t *testing.T) {
	p := startPrimary(t, "example.com.", 1, 200)
	dir := t.TempDir()
	idx, err := zonediff.Open(dir, zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	core, logs := observer.New(zapcore.InfoLevel)
	be := memory.New()
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 1, DialTimeout: time.Second, StallTimeout: 2 * time.Second,
		Index: idx}, be, zap.New(core))
	err = m.Create(context.Background(), "example.com.")
	m.Close()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if serial, err := be.Serial(context.Background(), "example.com."); err != nil || serial != 1 {
		t.Fatalf("the backend holds serial %d (%v), want 1", serial, err)
	}
	lines := logs.FilterMessage("transfer").All()
	if len(lines) != 1 || lines[0].Level != zapcore.WarnLevel || lines[0].ContextMap()["result"] != "applied" ||
		!strings.Contains(fmt.Sprint(lines[0].ContextMap()["index_error"]), "no such file or directory") {
		t.Fatalf("transfer lines %+v; want one applied at warn, with the index error", lines)
	}
}

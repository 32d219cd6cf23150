package transfer

import (
	"net/netip"
	"testing"
	"time"
)

// A transfer kept compact reads back as it was logged: the common one (a listed master,
// applied) and a rare one (an unlisted master, a fallback, a failure, odd strings).
func TestKeptSummaryReadsBackTheSame(t *testing.T) {
	masters := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("[2001:db8::1]:5353")}
	at := time.Date(2026, 12, 4, 22, 0, 0, 123, time.UTC)
	for _, s := range []Summary{
		{Zone: "a.example.", Master: "[2001:db8::1]:5353", Type: "AXFR", From: 0, To: 7, Records: 5, Bytes: 195,
			Transfer: 3 * time.Millisecond, Apply: 8 * time.Millisecond, Path: "create", Result: "applied", At: at},
		{Zone: "b.example.", Master: "198.51.100.9:53", Type: "IXFR-full", Fallback: "IXFR failed", From: 1, To: 2,
			Records: 1 << 20, Bytes: 1 << 31, Path: "replace", PathReason: "no index", Deleted: 3, Added: 4,
			Result: "backend said no", At: at},
		{Zone: "c.example.", Master: "192.0.2.1:53", Type: "something new", Path: "sideways", Result: "applied", At: at},
	} {
		got := *keep(&s, masters).summary(s.Zone, masters)
		if !got.At.Equal(s.At) {
			t.Errorf("%s: at %v, want %v", s.Zone, got.At, s.At)
		}
		got.At = s.At
		if got != s {
			t.Errorf("kept and read back:\n got %+v\nwant %+v", got, s)
		}
	}
}

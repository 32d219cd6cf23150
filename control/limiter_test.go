package control

import (
	"net/netip"
	"testing"
	"time"
)

// control_rate_limit below 0.5 a second (one call every 5 s, say) still lets a call
// through: the bucket holds at least one token.
func TestSlowRateLetsCallsThrough(t *testing.T) {
	l := &limiter{rate: 0.2, buckets: map[netip.Addr]*bucket{}}
	source, now := netip.MustParseAddr("192.0.2.1"), time.Now()
	if !l.allow(source, now) {
		t.Fatal("the first call refused at a rate of 0.2 a second")
	}
	if l.allow(source, now.Add(time.Second)) {
		t.Error("a second call 1 s later let through at a rate of 0.2 a second")
	}
	if !l.allow(source, now.Add(6*time.Second)) {
		t.Error("a call 6 s later refused at a rate of 0.2 a second")
	}
}

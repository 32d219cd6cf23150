package logsample

import (
	"testing"
	"time"
)

// The first event of a key is logged, then one per interval with the count since the
// last line; keys are counted apart.
func TestSamplerOncePerInterval(t *testing.T) {
	now := time.Unix(0, 0)
	s := New[string](10*time.Second, func() time.Time { return now })
	for _, step := range []struct {
		after time.Duration
		key   string
		n     int
		due   bool
	}{
		{0, "create", 1, true},
		{time.Second, "create", 0, false},
		{time.Second, "create", 0, false},
		{time.Second, "notify", 1, true},
		{8 * time.Second, "create", 3, true}, // 10 s after the first line: this one and the two held back
		{time.Second, "create", 0, false},
	} {
		now = now.Add(step.after)
		if n, due := s.Due(step.key); n != step.n || due != step.due {
			t.Fatalf("at %v, %s: Due = %d, %v; want %d, %v", now.Sub(time.Unix(0, 0)), step.key, n, due, step.n, step.due)
		}
	}
}

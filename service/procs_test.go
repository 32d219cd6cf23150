package service

import (
	"runtime"
	"testing"
	"time"
)

// Zone work raises GOMAXPROCS to Go's own number at once; it stays there while any work
// runs and until idleAfter has passed since the last ended, then drops to one.
func TestProcsFollowTheWork(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	runtime.SetDefaultGOMAXPROCS()
	own := runtime.GOMAXPROCS(0)
	want := func(what string, n int) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != n {
			t.Fatalf("%s: GOMAXPROCS %d, want %d", what, got, n)
		}
	}
	const idleAfter = 50 * time.Millisecond
	p := &procs{idleAfter: idleAfter}
	p.lower()
	want("idle", 1)
	first := p.begin()
	want("working", own)
	second := p.begin()
	first()
	first() // once only: the second is still running
	time.Sleep(3 * idleAfter)
	want("one of two ended", own)
	second()
	want("right after the last ended", own)
	time.Sleep(3 * idleAfter)
	want("idle again", 1)
	p.begin()()
	time.Sleep(idleAfter / 5)
	again := p.begin() // before the idle timer: it must not lower under running work
	time.Sleep(3 * idleAfter)
	want("work begun within idleAfter", own)
	again()
	time.Sleep(3 * idleAfter)
	want("idle at last", 1)
}

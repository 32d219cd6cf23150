package powerdns

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

// 64 creates at once with pdns_control taking 20 ms a run: a handful of rediscovers,
// not 64, and every create returns only after a rediscover and a purge of its zone that
// started after its commit (so pdns_server serves it when the CREATE is answered).
func TestConcurrentCreatesShareRediscover(t *testing.T) {
	cfg := controlConfig()
	st := newFakeStore()
	var mu sync.Mutex
	var log []string // "commit ZONE" / "start rediscover" / "purge ZONES"
	run := func(_ context.Context, argv []string) (string, error) {
		mu.Lock()
		log = append(log, "start "+strings.Join(argv[2:], " "))
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return "", nil
	}
	b := newBackend(st, cfg, run)
	const n = 64
	returned := make([]int, n) // index into log when Create returned
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zone := fmt.Sprintf("z%d.example.", i)
			if err := b.Create(t.Context(), zone, backendtest.Stream(backendtest.Zone(zone, 1, 3))); err != nil {
				t.Error(err)
			}
			mu.Lock()
			returned[i] = len(log)
			mu.Unlock()
		}()
	}
	wg.Wait()
	rediscovers := 0
	for _, l := range log {
		if l == "start rediscover" {
			rediscovers++
		}
	}
	if rediscovers > n/4 {
		t.Errorf("%d creates ran %d rediscovers, want them shared", n, rediscovers)
	}
	t.Logf("%d creates: %d rediscovers, %d pdns_control runs", n, rediscovers, len(log))
	for i := 0; i < n; i++ {
		// The last purge naming the zone, and a rediscover before it, ran before Create returned.
		purged, rediscovered := -1, -1
		for j, l := range log[:returned[i]] {
			if strings.HasPrefix(l, "start purge") && strings.Contains(l+" ", fmt.Sprintf(" z%d.example$ ", i)) {
				purged = j
			}
		}
		for j := purged; j >= 0; j-- {
			if log[j] == "start rediscover" {
				rediscovered = j
				break
			}
		}
		if purged < 0 || rediscovered < 0 {
			t.Errorf("z%d: Create returned before a rediscover and a purge of its zone ran", i)
		}
	}
}

// A create says it is committed (backend.Committed) once, with its rows in the database
// and before the pdns_control runs it then waits for, and returns only after them.
func TestCreateCommittedBeforeRediscover(t *testing.T) {
	st := newFakeStore()
	var mu sync.Mutex
	runs := 0
	b := newBackend(st, controlConfig(), func(context.Context, []string) (string, error) {
		mu.Lock()
		runs++
		mu.Unlock()
		return "", nil
	})
	calls, runsThen, rowsThen := 0, 0, 0
	ctx := backend.WithCommitted(t.Context(), func() {
		calls++
		mu.Lock()
		runsThen = runs
		mu.Unlock()
		rowsThen = len(st.rowsOf("example.com"))
	})
	if err := b.Create(ctx, "example.com.", backendtest.Stream(backendtest.Zone("example.com.", 1, 3))); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || runsThen != 0 || rowsThen == 0 || runs == 0 {
		t.Fatalf("Committed called %d times, with %d rows stored and %d pdns_control runs done then (%d at the end); "+
			"want once, rows stored, before any run", calls, rowsThen, runsThen, runs)
	}
}

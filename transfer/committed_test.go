package transfer

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/memory"
)

// settling is a backend whose Create of zone hold commits, says so (backend.Committed),
// then waits for gate as the powerdns backend waits for its shared rediscover, or the
// file backend for the directory's group fsync. An error from gate (or the end of ctx)
// fails the Create, and the zone goes again, as those backends do.
type settling struct {
	*memory.Backend
	hold      string
	committed chan struct{} // closed once hold is committed
	gate      chan error
}

func newSettling(hold string) *settling {
	return &settling{Backend: memory.New(), hold: hold, committed: make(chan struct{}), gate: make(chan error, 1)}
}

func (s *settling) Create(ctx context.Context, zone string, src backend.Source) error {
	if err := s.Backend.Create(ctx, zone, src); err != nil || zone != s.hold {
		return err
	}
	backend.Committed(ctx)
	close(s.committed)
	var err error
	select {
	case err = <-s.gate:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.Backend.Delete(context.Background(), zone) //nolint:errcheck // the test checks the outcome
	}
	return err
}

// startSettling starts a manager with one worker on s, and a CREATE of s.hold that is
// committed and waits for s.gate; it returns the manager and the CREATE's outcome.
func startSettling(t *testing.T, s *settling) (*Manager, chan error) {
	t.Helper()
	p := startManyPrimary(t)
	m := NewManager(Config{Masters: []netip.AddrPort{p.addr}, Workers: 1, DialTimeout: time.Second,
		StallTimeout: 2 * time.Second, RetryMin: time.Minute}, s, zap.NewNop())
	t.Cleanup(m.Close)
	done := make(chan error, 1)
	go func() { done <- m.Create(context.Background(), s.hold) }()
	select {
	case <-s.committed:
	case <-time.After(eventuallyWithin):
		t.Fatal("the CREATE never reached its commit")
	}
	return m, done
}

func outcomeOf(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(eventuallyWithin):
		t.Fatal("the CREATE was not answered")
		return nil
	}
}

// A CREATE waiting for its zone to be served, once committed, holds no transfer worker:
// with one worker another zone is created meanwhile, so such waits batch across more zones
// than there are workers (issue 15), and the first CREATE is answered only after its wait.
func TestCreateWaitingToBeServedHoldsNoWorker(t *testing.T) {
	s := newSettling("a.test.")
	m, done := startSettling(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Create(ctx, "b.test."); err != nil {
		t.Fatalf("a CREATE while another waits to be served, one worker: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the first CREATE was answered (%v) before its zone was served", err)
	default:
	}
	s.gate <- nil
	if err := outcomeOf(t, done); err != nil {
		t.Fatalf("first CREATE: %v", err)
	}
	if _, err := s.Serial(ctx, "a.test."); err != nil {
		t.Fatalf("after the CREATE: %v", err)
	}
}

// A failure in the wait after the commit fails the CREATE with its cause, and the zone is
// not held.
func TestCreateFailingAfterCommitIsAnError(t *testing.T) {
	s := newSettling("a.test.")
	_, done := startSettling(t, s)
	s.gate <- errors.New("pdns_control rediscover: exit status 1")
	err := outcomeOf(t, done)
	if !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "rediscover") {
		t.Fatalf("CREATE whose zone was never served: %v, want the check's failure with its cause", err)
	}
	if _, err := s.Serial(context.Background(), "a.test."); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after the failed CREATE: %v, want the zone not held", err)
	}
}

// A DELETE while a CREATE waits after its commit wins: the CREATE fails, and the zone is
// gone once the DELETE is answered.
func TestDeleteWhileCreateWaitsAfterCommit(t *testing.T) {
	s := newSettling("a.test.")
	m, done := startSettling(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), eventuallyWithin)
	defer cancel()
	if err := m.Delete(ctx, "a.test."); err != nil {
		t.Fatal(err)
	}
	if err := outcomeOf(t, done); err == nil {
		t.Fatal("CREATE answered as a success although a DELETE came before its zone was served")
	}
	if _, err := s.Serial(ctx, "a.test."); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after the DELETE: %v, want the zone gone", err)
	}
}

// A repeated CREATE (Designate retries one it got no answer to) while the first waits
// after its commit to be served waits with it: the zone is in the backend already, but
// answering NOERROR then would tell Designate it is served before it is.
func TestRepeatedCreateWaitsUntilServed(t *testing.T) {
	s := newSettling("a.test.")
	m, done := startSettling(t, s)
	again := make(chan error, 1)
	go func() { again <- m.Create(context.Background(), "a.test.") }()
	select {
	case err := <-again:
		t.Fatalf("the repeated CREATE was answered (%v) before the zone was served", err)
	case <-time.After(200 * time.Millisecond):
	}
	s.gate <- nil
	if err := outcomeOf(t, done); err != nil {
		t.Fatalf("first CREATE: %v", err)
	}
	if err := outcomeOf(t, again); err != nil {
		t.Fatalf("repeated CREATE: %v", err)
	}
}

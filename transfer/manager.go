// Package transfer owns getting zones from the primaries into the backend: the per-zone
// scheduler (one job per zone, NOTIFYs coalesced, creates waited on, deletes that win over
// running work, retries with backoff, periodic refresh), master selection, the AXFR and
// IXFR client with RFC 1995 decoding, TSIG on transfers, and RFC 1982 serial arithmetic.
package transfer

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonediff"
	"github.com/dnsagent/dnsagent/logsample"
	"github.com/dnsagent/dnsagent/option"
	"github.com/dnsagent/dnsagent/tsigkey"
	"go.uber.org/zap"
)

// ErrUnknownZone is returned by Notify for a zone the backend does not hold and no CREATE
// is bringing in.
var ErrUnknownZone = errors.New("zone is not served by this agent")

// errStopping ends a check that was about to start when the agent began shutting down.
var errStopping = errors.New("the agent is stopping")

// errDeleted ends a job whose zone was deleted while it ran.
var errDeleted = errors.New("zone was deleted while the transfer ran")

// Config is the transfer engine's part of [service:agent].
type Config struct {
	Masters         []netip.AddrPort
	Source          netip.Addr    // transfer_source
	Key             *tsigkey.Key  // masters_tsig_key
	Workers         int           // concurrent transfers
	NotifyDelay     time.Duration // debounce before acting on a NOTIFY
	DialTimeout     time.Duration
	StallTimeout    time.Duration
	MaxDuration     time.Duration // transfer_max_duration; 0: no limit
	MaxRecords      int           // max_zone_records; 0: no limit
	MaxBytes        int           // max_transfer_bytes; 0: no limit
	SpoolDir        string        // transfer_spool_dir: large IXFR change sets spill here
	RefreshInterval time.Duration // overrides the SOA refresh when set
	RetryMin        time.Duration // first retry delay; doubles up to the SOA retry
	StartupSpread   time.Duration // start-up checks are spread over at least this long
	// MaxChecksPerSecond caps the SOA queries and transfers sent to each master per
	// second by background checks (start-up, refresh, retry); NOTIFYs and CREATEs go
	// ahead of them but count against it. 0: no cap.
	MaxChecksPerSecond int
	// MinCheckInterval spaces the checks of one zone: NOTIFYs arriving sooner fold into
	// the next check instead of each costing a SOA query. A CREATE is never held back.
	MinCheckInterval time.Duration
	// OnChecked, when set, is called after every successful check of a zone, with whether
	// the check changed what the backend holds (the zone was created or a newer version
	// applied). A check that found the zone up to date reports changed false, which tells
	// that the primary still serves the same version. It is called once the check's
	// outcome is recorded, so the zone's Status already shows it (applied serial, last
	// transfer, failures), though its state still reads transferring. It runs on the
	// zone's job goroutine before any CREATE waiting for the check is released, and must
	// return quickly. It is not called for a check cut short by a DELETE or the shutdown.
	// The catalog consumer uses it to learn about new versions of catalog zones.
	OnChecked func(zone string, changed bool)
	// Working, when set, is called as work on a zone begins (a check: its SOA query,
	// transfer and apply; a delete; an operator's verify or resync), and the function it
	// returns as that ends. The agent runs its Go code on more threads while any runs
	// (service.procs).
	Working func() (done func())
	// checked, when set, is signalled where OnChecked is called, after every check
	// recorded, failed ones too: the tests wait on it for a check's outcome instead of
	// polling. One slot: a signal nobody took yet stands for any number of checks.
	checked chan struct{}
	// MetricsSubsystem names this engine's metrics apart from another engine's in the
	// same agent: "catalog" gives dnsagent_catalog_transfers_total; empty, the zone
	// engine's dnsagent_transfers_total.
	MetricsSubsystem string
	// Index, when set, applies full zones for held zones as their difference from the
	// held version (diff_index_dir); nil: every full zone is a replace.
	Index *zonediff.Index
}

// Validate checks the settings the engine cannot run without; each problem is a field
// error naming the option of [service:agent].
func (c Config) Validate() error {
	var errs option.Errors
	if len(c.Masters) == 0 {
		errs.Add("masters", "required: list the primaries to transfer zones from, as IP:port")
	}
	if c.Workers < 1 {
		errs.Add("workers", "must be at least 1")
	}
	if c.RetryMin <= 0 {
		errs.Add("retry_min", "must be more than 0")
	}
	// 0 would be no time at all, not "no limit": every SOA query and transfer would fail.
	if c.DialTimeout <= 0 {
		errs.Add("transfer_connect_timeout", "must be more than 0")
	}
	if c.StallTimeout <= 0 {
		errs.Add("transfer_stall_timeout", "must be more than 0 (transfer_max_duration = 0 is the option for no overall limit)")
	}
	return errs.Err()
}

// Notify is what a NOTIFY tells about a zone.
type Notify struct {
	Source    netip.Addr // who sent it; masters on this address come first among equal serials
	Serial    uint32     // the serial it carried, if HasSerial
	HasSerial bool

	received bool // set by Manager.Notify: the check was asked for by a NOTIFY, not a timer
}

// Manager runs the transfers. It owns one goroutine per zone with work, bounded in
// concurrent transfers by Workers, and a dispatcher starting the background checks from
// one heap of due times (pace.go); Close stops them all.
type Manager struct {
	cfg     Config
	client  *Client
	backend backend.Backend
	log     *zap.Logger
	now     func() time.Time
	epoch   time.Time // instants count from here (instant)
	metrics *engineMetrics

	ctx      context.Context // cancelled by Close
	stop     context.CancelFunc
	draining chan struct{} // closed when shutting down: no new checks start
	wg       sync.WaitGroup
	workers  chan struct{}

	// failedCreates samples the lines about CREATEs whose check failed: a flood of
	// CREATEs for zones no master serves must make a few lines, not one each.
	failedCreates *logsample.Sampler[bool]

	mu         sync.Mutex
	closed     bool
	zones      map[string]*zone
	deleting   map[string]*deletion // zones a DELETE is removing from the backend now
	ensures    map[string]*waiter   // paced creates (Ensure) waiting for a background slot
	masters    map[netip.AddrPort]*masterHealth
	pacers     map[netip.AddrPort]*pacer
	due        dueQueue      // zones with a background check armed, soonest first
	background int           // background jobs started and not yet ended
	wake       chan struct{} // tells the dispatcher the heap's head or a slot changed
}

// zone is the scheduler's state for one zone, kept small: with 100,000 zones every byte
// here is 100 kB (README, Scale). Fields are guarded by Manager.mu.
type zone struct {
	name      string
	job       *job          // queued or running work; nil when idle
	applyBusy chan struct{} // non-nil while an apply or delete of the zone runs; closed at its end
	lastCheck instant       // when the last check started (MinCheckInterval)
	// gen is bumped by every DELETE: work started before it must not apply. 32 bits, as
	// slot, so the two share a word: no zone sees 4 billion DELETEs during one check.
	gen   uint32
	slot  int32 // position in Manager.due plus one; 0: no check armed
	sched schedule
}

// job is the work queued or running for a zone. Fields are guarded by Manager.mu.
type job struct {
	gen     uint32
	cancel  context.CancelFunc
	running bool // a check is under way (else it waits for notify_delay or a worker)
	// background: started by the dispatcher (start-up, refresh, retry), holding one of
	// its slots until the job ends.
	background bool
	pending    bool    // run one more check when the current one ends (a NOTIFY came)
	hint       Notify  // the latest NOTIFY's hint
	create     *waiter // a CREATE waits for the zone to be created
	// hurry is set while create is an Ensure's only, which keeps to the background pace;
	// closed when an urgent create joins it (joinCreate).
	hurry chan struct{}
}

// pace marks the job's create as an Ensure's: it keeps to the background pace until an
// urgent create joins it.
func (j *job) pace() { j.hurry = make(chan struct{}) }

// joinCreate records a create joining the job's; an urgent one ends a paced check's wait
// for its turn.
func (j *job) joinCreate(paced bool) {
	if j.hurry != nil && !paced {
		close(j.hurry)
		j.hurry = nil
	}
}

// ErrCheckFailed is in the error of a Create whose check failed. The engine logs such a
// failure with its cause ("zone check failed", sampled), so its callers need not.
var ErrCheckFailed = errors.New("zone check failed")

// checkFailed is a check's error as Create returns it: the same text, and ErrCheckFailed.
type checkFailed struct{ err error }

func (e checkFailed) Error() string        { return e.err.Error() }
func (e checkFailed) Unwrap() error        { return e.err }
func (e checkFailed) Is(target error) bool { return target == ErrCheckFailed }

// waiter lets CREATE requests wait for the check that creates their zone.
type waiter struct {
	done chan struct{}
	err  error
}

// NewManager returns a Manager applying transfers to be.
func NewManager(cfg Config, be backend.Backend, log *zap.Logger) *Manager {
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin // a zero delay would turn retries into a busy loop
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg,
		client: &Client{Source: cfg.Source, DialTimeout: cfg.DialTimeout, StallTimeout: cfg.StallTimeout,
			MaxDuration: cfg.MaxDuration, Key: cfg.Key, MaxRecords: cfg.MaxRecords, MaxBytes: cfg.MaxBytes,
			SpoolDir: cfg.SpoolDir, conns: newConnPool()},
		backend:  be,
		log:      log,
		now:      time.Now,
		epoch:    time.Now().Add(-time.Second),
		ctx:      ctx,
		stop:     stop,
		draining: make(chan struct{}),
		workers:  make(chan struct{}, cfg.Workers),
		zones:    map[string]*zone{},
		deleting: map[string]*deletion{},
		ensures:  map[string]*waiter{},
		masters:  map[netip.AddrPort]*masterHealth{},
		pacers:   map[netip.AddrPort]*pacer{},
		wake:     make(chan struct{}, 1),

		failedCreates: logsample.New[bool](failureLogInterval, time.Now),
		metrics:       newMetrics(cfg.MetricsSubsystem),
	}
	m.client.Pace = m.waitTurn
	m.wg.Add(1)
	go m.dispatch()
	return m
}

// Start schedules one check of every zone the backend holds, spread with jitter over
// StartupSpread, or longer when MaxChecksPerSecond could not check them all in that time,
// so thousands of zones do not hit the masters at once. A NOTIFY missed while the agent
// was down heals this way, and each zone's periodic refresh starts from there.
func (m *Manager) Start(ctx context.Context) error {
	names, err := m.backend.Zones(ctx)
	if err != nil {
		return fmt.Errorf("listing the backend's zones: %w", err)
	}
	spread := m.startupSpread(len(names))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range names {
		z := m.zoneLocked(name)
		z.sched.lastSuccess = m.nowInstant() // the baseline for expiry: we cannot know better
		if z.job == nil {
			m.armLocked(z, Jitter(spread, 1))
		}
	}
	m.log.Info("scheduled start-up checks", zap.Int("zones", len(names)), zap.Duration("spread", spread))
	return nil
}

// Close cancels all work and waits for it to end. A cancelled transfer is never applied.
func (m *Manager) Close() { m.Shutdown(0) }

// Shutdown stops taking work, lets transfers already running finish for up to grace, then
// cancels the rest and waits for it to end. Queued checks are dropped, and a cancelled
// transfer is never applied: every zone keeps a complete version.
func (m *Manager) Shutdown(grace time.Duration) {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.draining)
		for len(m.due) > 0 {
			heap.Pop(&m.due)
		}
		for name := range m.ensures {
			m.failEnsureLocked(name, errStopping)
		}
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		m.log.Info("shutdown: cancelling transfers still running", zap.Duration("grace", grace))
	}
	m.stop()
	<-done
}

func (m *Manager) zoneLocked(name string) *zone {
	z := m.zones[name]
	if z == nil {
		z = &zone{name: name}
		m.zones[name] = z
	}
	return z
}

// enqueueLocked makes sure a job will look at the zone: it joins the running or queued
// job (which then checks once more when done) or starts a new one. It returns nil once
// the manager is closed.
func (m *Manager) enqueueLocked(z *zone, hint Notify) *job {
	if m.closed {
		return nil
	}
	if j := z.job; j != nil {
		j.pending = true
		if hint.received || !j.hint.received { // a timer never hides a NOTIFY's hint
			j.hint = hint
		}
		return j
	}
	m.disarmLocked(z)
	ctx, cancel := context.WithCancel(m.ctx)
	j := &job{gen: z.gen, cancel: cancel, hint: hint}
	if w := m.ensures[z.name]; w != nil { // a paced create waited for this check
		delete(m.ensures, z.name)
		j.create = w
		j.pace()
	}
	z.job = j
	m.wg.Add(1)
	go m.run(ctx, z, j)
	return j
}

// Notify schedules a check of the zone and returns at once; the transfer runs later.
// A NOTIFY for a zone with work under way (a CREATE among it) folds into that work.
func (m *Manager) Notify(ctx context.Context, name string, n Notify) error {
	n.received = true
	m.mu.Lock()
	if z := m.zones[name]; z != nil && (z.job != nil || z.sched.hasApplied) {
		// Work under way folds the NOTIFY in; a zone checked before is known, with its
		// serial, so a burst of NOTIFYs does not read the backend each time.
		if z.job != nil || !n.HasSerial || Newer(n.Serial, z.sched.applied) {
			m.enqueueLocked(z, n)
		}
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()

	serial, err := m.backend.Serial(ctx, name)
	if errors.Is(err, backend.ErrNotFound) || errors.Is(err, backend.ErrNotOwned) {
		return ErrUnknownZone // a zone someone else manages is none of our business
	}
	if err != nil {
		return fmt.Errorf("notify %s: %w", name, err)
	}
	if n.HasSerial && !Newer(n.Serial, serial) {
		m.log.Debug("NOTIFY for a serial we hold already", zap.String("zone", name),
			zap.Uint32("notified", n.Serial), zap.Uint32("applied", serial))
		return nil
	}
	m.mu.Lock()
	m.enqueueLocked(m.zoneLocked(name), n)
	m.mu.Unlock()
	return nil
}

// Create transfers the zone and creates it in the backend, waiting until that is done or
// ctx ends. A zone that exists already is a success. The transfer goes on after ctx
// ends, and a repeated Create waits for the same work instead of starting more.
func (m *Manager) Create(ctx context.Context, name string) error { return m.create(ctx, name, false) }

// Ensure is Create at the background checks' pace: its queries wait for their turns
// under max_checks_per_second, as a refresh's do. For work nobody waits on at the other
// end: a catalog's members made sure of after a restart or a failure (catalog), which
// may be thousands at once.
func (m *Manager) Ensure(ctx context.Context, name string) error { return m.create(ctx, name, true) }

func (m *Manager) create(ctx context.Context, name string, paced bool) error {
	// A create under way first: its zone may be in the backend already, committed but
	// not yet served (backend.Committed), and the repeated CREATE is answered with it.
	w, known := m.createWaiter(name, false, paced)
	if w == nil {
		// A zone the agent knows of may be held: a repeated CREATE is answered here, without
		// waiting for a worker. One it does not know of is new (from Start on, every zone
		// the backend holds is known) and goes straight to its check, which asks the
		// backend first anyway and finds a zone created behind the agent's back: asked
		// here too, each new zone would cost the backend a second lookup (powerdns: a
		// statement, 8% of the agent's CPU in a burst of creates; bench/README.md).
		if known && !m.beingDeleted(name) {
			if _, err := m.backend.Serial(ctx, name); err == nil {
				return nil
			} else if !errors.Is(err, backend.ErrNotFound) {
				return fmt.Errorf("create %s: %w", name, err)
			}
		}
		if w, _ = m.createWaiter(name, true, paced); w == nil {
			return fmt.Errorf("create %s: the agent is stopping", name)
		}
	}
	select {
	case <-w.done:
		if w.err != nil {
			return checkFailed{w.err}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("create %s: not done in time, the transfer goes on: %w", name, ctx.Err())
	}
}

// createWaiter returns the waiter of the zone's create under way, and whether the zone
// is known (held, or being worked on); with start, it queues the create when none is
// (nil: the agent is stopping). A create that is not paced makes the job's create urgent.
// A paced one with no job to join waits for the dispatcher to start its check in a
// background slot, as a refresh's: it never holds a worker another check needs.
func (m *Manager) createWaiter(name string, start, paced bool) (*waiter, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	z := m.zones[name]
	if z != nil && z.job != nil && z.job.create != nil {
		z.job.joinCreate(paced)
		return z.job.create, true
	}
	if w := m.ensures[name]; w != nil && paced { // an urgent create does not wait for the pace
		return w, true
	}
	if !start {
		return nil, z != nil
	}
	if m.closed {
		return nil, z != nil
	}
	if paced && (z == nil || z.job == nil) {
		w := &waiter{done: make(chan struct{})}
		m.ensures[name] = w
		m.armLocked(m.zoneLocked(name), 0) // enqueueLocked attaches w to the job it starts
		return w, z != nil
	}
	j := m.enqueueLocked(m.zoneLocked(name), Notify{})
	if j == nil {
		return nil, z != nil
	}
	if j.create == nil {
		j.create = &waiter{done: make(chan struct{})}
	} else {
		j.joinCreate(paced)
	}
	return j.create, z != nil
}

// failEnsureLocked ends the paced create waiting for the zone's check, if one does.
func (m *Manager) failEnsureLocked(name string, err error) {
	if w := m.ensures[name]; w != nil {
		delete(m.ensures, name)
		w.err = err
		close(w.done)
	}
}

// Delete removes the zone from the backend. Queued work for it is dropped and running
// work cancelled; no transfer that started before can bring the zone back, and work that
// starts meanwhile (a CREATE) waits until the zone is gone. A zone that does not exist is
// a success. A DELETE that fails leaves the zone held, and arms its next check.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	z := m.zoneLocked(name)
	z.gen++
	if j := z.job; j != nil {
		j.cancel()
		z.job = nil
	}
	m.disarmLocked(z)
	m.failEnsureLocked(name, fmt.Errorf("create %s: deleted before its check", name))
	d := m.deleting[name]
	if d == nil {
		d = &deletion{done: make(chan struct{})}
		m.deleting[name] = d
	}
	d.n++
	m.mu.Unlock()

	failed := true // until the backend says otherwise: a panic in it keeps the zone held
	defer func() {
		m.mu.Lock()
		if d.n--; d.n == 0 {
			delete(m.deleting, name)
			close(d.done)
		}
		switch {
		case failed && z.job == nil && !m.closed && m.zones[name] == z:
			m.armAfterLocked(z, outcome{}) // still held: its refresh goes on
		case !failed && z.job == nil && m.zones[name] == z:
			delete(m.zones, name) // a job still holding z sees the bumped gen and never applies
		}
		m.mu.Unlock()
	}()
	err := m.deleteHeld(ctx, z, name)
	failed = err != nil && !errors.Is(err, backend.ErrNotFound)
	if failed {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// deleteHeld removes the zone from the backend and the index once no apply of it runs.
// Its locks are released however the backend returns, a panic too (the request chain's
// Recover answers for that one).
func (m *Manager) deleteHeld(ctx context.Context, z *zone, name string) error {
	if err := m.lockApply(ctx, z); err != nil {
		return fmt.Errorf("waiting for a running apply: %w", err)
	}
	defer m.unlockApply(z)
	defer m.working()()
	err := m.backend.Delete(ctx, name)
	if m.cfg.Index != nil {
		m.cfg.Index.Drop(name)
	}
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		m.metrics.backendErrors.WithLabelValues("delete").Inc()
	}
	return err
}

// working tells Config.Working that work on a zone begins, and returns what ends it.
func (m *Manager) working() (done func()) {
	if m.cfg.Working == nil {
		return func() {}
	}
	return m.cfg.Working()
}

// deletion is a DELETE under way; done is closed when the last of n concurrent ones ends.
type deletion struct {
	done chan struct{}
	n    int
}

// beingDeleted tells whether a DELETE of the zone is under way.
func (m *Manager) beingDeleted(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleting[name] != nil
}

// waitDeleted waits until no DELETE of the zone is under way, so that a check does not
// find a zone that is about to go (a CREATE would be answered, then the zone deleted).
func (m *Manager) waitDeleted(ctx context.Context, name string) error {
	m.mu.Lock()
	d := m.deleting[name]
	m.mu.Unlock()
	if d == nil {
		return nil
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lockApply waits until no apply or delete of the zone runs and marks one running. The
// lock costs a channel only while held, not one per zone.
func (m *Manager) lockApply(ctx context.Context, z *zone) error {
	for {
		m.mu.Lock()
		busy := z.applyBusy
		if busy == nil {
			z.applyBusy = make(chan struct{})
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Manager) unlockApply(z *zone) {
	m.mu.Lock()
	close(z.applyBusy)
	z.applyBusy = nil
	m.mu.Unlock()
}

// run works on the zone until no more checks are pending, then arms its next check.
func (m *Manager) run(ctx context.Context, z *zone, j *job) {
	defer m.wg.Done()
	defer j.cancel()
	defer m.endBackground(j)
	m.mu.Lock()
	debounce := j.hint.received && j.create == nil
	m.mu.Unlock()
	if m.cfg.NotifyDelay > 0 && debounce {
		// Debounce: NOTIFYs arriving during the delay fold into this one check. Only a
		// NOTIFY waits (Designate's notify_delay): a CREATE would spend its create_timeout,
		// and a background check its slot.
		select {
		case <-time.After(m.cfg.NotifyDelay):
		case <-ctx.Done():
		}
	}
	for {
		m.spaceChecks(ctx, z, j)
		m.mu.Lock()
		j.pending, j.running = false, true
		hint, create, hurry := j.hint, j.create, j.hurry
		z.lastCheck = m.nowInstant()
		m.mu.Unlock()

		outcome := m.check(ctx, z, j.gen, hint, create != nil, hurry)
		cutShort := ctx.Err() != nil // else the outcome is the check's own, whatever comes next
		m.mu.Lock()
		// Recorded before anyone hears of the check, so a hook or a released CREATE
		// reading Status sees this check's outcome, not the previous one's. A check cut
		// short by a DELETE or the shutdown is not recorded: the zone is going away.
		recorded := z.job == j && ctx.Err() == nil && !m.closed
		if recorded {
			m.recordLocked(z, outcome)
		}
		m.mu.Unlock()
		if recorded {
			m.reportCheck(z.name, outcome)
		}

		m.mu.Lock()
		j.running = false
		if create != nil {
			create.err = outcome.err
			close(create.done)
			if j.create == create {
				j.create = nil
			}
		}
		if j.pending && ctx.Err() == nil && !m.closed {
			m.mu.Unlock()
			continue
		}
		if j.create != nil { // a CREATE arrived as the job was cancelled
			j.create.err = fmt.Errorf("create %s: cancelled: %w", z.name, context.Cause(ctx))
			close(j.create.done)
		}
		if z.job == j && (ctx.Err() != nil || m.closed) {
			z.job = nil // deleted or stopping: nothing to schedule
		}
		if z.job == j {
			z.job = nil
			m.armAfterLocked(z, outcome)
			if outcome.gone {
				delete(m.zones, z.name) // not in the backend: nothing to schedule or report
			}
		}
		m.mu.Unlock()
		if outcome.err != nil {
			m.logFailure(z, outcome, cutShort)
		}
		return
	}
}

// reportCheck tells the hooks about a check whose outcome is recorded.
func (m *Manager) reportCheck(zone string, o outcome) {
	if m.cfg.OnChecked != nil && o.err == nil && !o.gone {
		m.cfg.OnChecked(zone, o.changed)
	}
	select {
	case m.cfg.checked <- struct{}{}: // a nil channel (not under test) is never ready
	default:
	}
}

// endBackground frees the dispatcher's slot a background job held.
func (m *Manager) endBackground(j *job) {
	m.mu.Lock()
	if j.background {
		j.background = false
		m.background--
		m.wakeDispatcher()
	}
	m.mu.Unlock()
}

// spaceChecks waits, unless a CREATE is waiting, until MinCheckInterval has passed since
// the zone's last check: a flood of NOTIFYs (Designate's carry no serial) then costs one
// SOA query per zone per interval, and every NOTIFY arriving meanwhile folds into the
// next check, so none is lost.
func (m *Manager) spaceChecks(ctx context.Context, z *zone, j *job) {
	m.mu.Lock()
	wait := m.cfg.MinCheckInterval - m.nowInstant().sub(z.lastCheck)
	creating := j.create != nil
	m.mu.Unlock()
	if wait <= 0 || creating {
		return
	}
	select {
	case <-time.After(wait):
	case <-ctx.Done():
	}
}

// outcome is what one check of a zone found.
type outcome struct {
	err     error
	gone    bool      // the zone is not in the backend (deleted, or a create failed)
	primary *soaTimes // the best master's SOA, when one answered
	applied uint32    // the serial the backend holds after the check
	unread  bool      // the backend could not tell its serial: applied means nothing
	changed bool      // the check created the zone or applied a newer version
	summary *Summary  // the transfer made, if any
}

// check brings the zone up to date with the masters (creating it if create is set); a
// create that brings hurry (an Ensure's) keeps to the background checks' pace.
func (m *Manager) check(ctx context.Context, z *zone, gen uint32, hint Notify, create bool, hurry chan struct{}) outcome {
	defer m.working()()
	select {
	case <-m.draining:
		return outcome{err: errStopping}
	default:
	}
	if err := m.waitDeleted(ctx, z.name); err != nil {
		return outcome{err: err}
	}
	slot := &workerSlot{m: m}
	if err := slot.take(ctx); err != nil {
		return outcome{err: err}
	}
	defer slot.give()
	// A backend gives the worker back once its change is committed (backend.Committed):
	// waiting for the server to serve it or for a shared fsync takes no worker, so such
	// waits batch across more zones than there are workers.
	ctx = backend.WithCommitted(ctx, slot.give)

	current, err := m.backend.Serial(ctx, z.name)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, backend.ErrNotFound):
		m.metrics.backendErrors.WithLabelValues("serial").Inc()
		// A create's zone (another's, or one the backend cannot say) is not the agent's
		// to check again: Designate's worker retries the CREATE.
		return outcome{err: err, gone: create, unread: true}
	case exists && create:
		return outcome{applied: current} // created meanwhile: CREATE is idempotent
	case !exists && !create:
		m.log.Info("zone no longer in the backend; nothing to refresh", zap.String("zone", z.name))
		return outcome{gone: true}
	}

	m.mu.Lock()
	// Only a periodic refresh after a successful check may leave out masters backing off:
	// a NOTIFY, a CREATE or a retry asks them all, so none holding a newer version is
	// missed when it matters (README, Transfers).
	skipBackedOff := !hint.received && !create && z.sched.failures == 0 && !z.sched.behindLocked()
	m.mu.Unlock()
	urgent := hint.received || create && hurry == nil // goes ahead of the background checks' pace
	ctx = withPacing(ctx, urgent, hurry)
	res := outcome{applied: current, gone: !exists}
	var masters []candidate
	if create && len(m.cfg.Masters) == 1 {
		// A new zone has no serial to compare and one master leaves no choice: its SOA
		// query would cost the master a connection and the CREATE a round trip, and the
		// AXFR brings the SOA anyway (README, Scale).
		masters = []candidate{{addr: m.cfg.Masters[0]}}
	} else {
		if masters, err = m.candidates(ctx, z.name, hint.Source, skipBackedOff); err != nil {
			res.err = err
			return res
		}
		res.primary = soaTimesOf(masters[0].soa)
	}
	if exists {
		// The zone is up to date only when no master that answered has a newer serial.
		masters = slices.DeleteFunc(masters, func(c candidate) bool { return !Newer(c.soa.Serial, current) })
		if len(masters) == 0 {
			m.log.Debug("zone is up to date", zap.String("zone", z.name), zap.Uint32("serial", current))
			return res
		}
	}
	var (
		errs  []error
		later []*axfrLater // masters whose IXFR failed on the wire: their AXFR comes last
	)
	// done tells whether the check ends with this transfer's outcome.
	done := func(summary *Summary, master netip.AddrPort, err error) bool {
		if err == nil && exists && !Newer(summary.To, current) {
			// Its SOA said newer (masters are only asked when it does): a master behind a
			// load balancer whose back ends disagree, or one that changed between the two
			// answers. A failure, so the retries back off and another master is tried.
			err = fmt.Errorf("%s answered its SOA with a newer serial, but its transfer brought serial %d, not newer than the %d held",
				master, summary.To, current)
			summary.setResult(err)
		}
		m.noteMaster(master, err)
		if summary != nil {
			res.summary = summary
			// A create's failed attempt: its cause is in the check's one line.
			m.logSummary(summary, err, exists || err == nil)
		}
		if err == nil {
			res.changed = !exists || Newer(summary.To, current)
			res.gone = false
			if res.changed { // else a full zone not newer than the held one was dropped
				res.applied = summary.To
			}
			if res.primary == nil {
				res.primary = summary.soa // no SOA query went before the transfer
			}
			return true
		}
		if errors.Is(err, errDeleted) || ctx.Err() != nil {
			res.err = err
			return true
		}
		var l *axfrLater
		if errors.As(err, &l) {
			later = append(later, l)
		}
		errs = append(errs, err)
		return false
	}
	for i, master := range masters {
		// Masters are sorted by serial: when the next one serves the same version, it goes
		// before this one's AXFR should this one's IXFR fail on the wire.
		elsewhere := i+1 < len(masters) && masters[i+1].soa.Serial == master.soa.Serial
		if err := slot.take(ctx); err != nil {
			return outcome{err: err, gone: !exists, applied: current}
		}
		if err := m.waitTurn(ctx, master.addr); err != nil {
			return outcome{err: err, gone: !exists, applied: current}
		}
		summary, err := m.update(ctx, z, gen, master.addr, exists, current, elsewhere)
		if done(summary, master.addr, err) {
			return res
		}
	}
	for _, l := range later {
		if err := slot.take(ctx); err != nil {
			return outcome{err: err, gone: !exists, applied: current}
		}
		if err := m.waitTurn(ctx, l.master); err != nil {
			return outcome{err: err, gone: !exists, applied: current}
		}
		summary, err := m.full(ctx, z, gen, l.master, exists, current, l.err.Error())
		if done(summary, l.master, err) {
			return res
		}
	}
	res.err = errors.Join(errs...)
	return res
}

// workerSlot is one check's hold on a transfer worker (Config.Workers). The backend may
// give it back before the check ends (backend.Committed); a check that transfers again
// afterwards (the next master, after a failure) takes one again.
type workerSlot struct {
	m    *Manager
	mu   sync.Mutex // give may run on a backend's goroutine
	held bool
}

// take waits for a worker unless the slot holds one.
func (s *workerSlot) take(ctx context.Context) error {
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held {
		return nil
	}
	select {
	case s.m.workers <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.m.draining:
		return errStopping
	}
	s.mu.Lock()
	s.held = true
	s.mu.Unlock()
	return nil
}

// give returns the worker, if the slot holds one.
func (s *workerSlot) give() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held {
		s.held = false
		<-s.m.workers
	}
}

// DefaultRetryMin is the first retry delay (retry_min) unless configured.
const DefaultRetryMin = 5 * time.Second

// Jitter returns a random duration in [d·(1-share), d]: retries and refreshes of many
// zones (or catalogs) spread out, never past the bound.
func Jitter(d time.Duration, share float64) time.Duration {
	return d - time.Duration(rand.Float64()*share*float64(d))
}

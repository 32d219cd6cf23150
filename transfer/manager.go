// Package transfer owns getting zones from the primaries into the backend: the per-zone
// scheduler (one job per zone, NOTIFYs coalesced, creates waited on, deletes that win over
// running work), master selection, the AXFR client and RFC 1982 serial arithmetic.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"go.uber.org/zap"
)

// ErrUnknownZone is returned by Notify for a zone the backend does not hold and no CREATE
// is bringing in.
var ErrUnknownZone = errors.New("zone is not served by this agent")

// errDeleted ends a job whose zone was deleted while it ran.
var errDeleted = errors.New("zone was deleted while the transfer ran")

// Config is the transfer engine's part of [service:agent].
type Config struct {
	Masters      []netip.AddrPort
	Source       netip.Addr    // transfer_source
	Workers      int           // concurrent transfers
	NotifyDelay  time.Duration // debounce before acting on a NOTIFY
	DialTimeout  time.Duration
	StallTimeout time.Duration
}

// Validate checks the settings the engine cannot run without.
func (c Config) Validate() error {
	if len(c.Masters) == 0 {
		return errors.New("no masters: list the primaries to transfer zones from")
	}
	if c.Workers < 1 {
		return errors.New("workers must be at least 1")
	}
	return nil
}

// Notify is what a NOTIFY tells about a zone.
type Notify struct {
	Source    netip.Addr // who sent it; tried first if it is one of the masters
	Serial    uint32     // the serial it carried, if HasSerial
	HasSerial bool
}

// Manager runs the transfers. It owns one goroutine per zone with work, bounded in
// concurrent transfers by Workers; Close stops them all.
type Manager struct {
	cfg     Config
	client  *Client
	backend backend.Backend
	log     *zap.Logger

	ctx     context.Context // cancelled by Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
	workers chan struct{}

	mu    sync.Mutex
	zones map[string]*zone
}

// zone is the scheduler's state for one zone.
type zone struct {
	name  string
	gen   uint64        // bumped by every DELETE: work started before it must not apply
	job   *job          // queued or running work; nil when idle
	apply chan struct{} // one-slot lock: applies and deletes of the zone never overlap
}

// job is the work queued or running for a zone. Fields are guarded by Manager.mu.
type job struct {
	gen     uint64
	cancel  context.CancelFunc
	pending bool    // run one more check when the current one ends (a NOTIFY came)
	hint    Notify  // the latest NOTIFY's hint
	create  *waiter // a CREATE waits for the zone to be created
}

// waiter lets CREATE requests wait for the iteration that creates their zone.
type waiter struct {
	done chan struct{}
	err  error
}

// NewManager returns a Manager applying transfers to be.
func NewManager(cfg Config, be backend.Backend, log *zap.Logger) *Manager {
	ctx, stop := context.WithCancel(context.Background())
	return &Manager{
		cfg:     cfg,
		client:  &Client{Source: cfg.Source, DialTimeout: cfg.DialTimeout, StallTimeout: cfg.StallTimeout},
		backend: be,
		log:     log,
		ctx:     ctx,
		stop:    stop,
		workers: make(chan struct{}, cfg.Workers),
		zones:   map[string]*zone{},
	}
}

// Close cancels all work and waits for it to end. A cancelled transfer is never applied.
func (m *Manager) Close() {
	m.stop()
	m.wg.Wait()
}

func (m *Manager) zoneLocked(name string) *zone {
	z := m.zones[name]
	if z == nil {
		z = &zone{name: name, apply: make(chan struct{}, 1)}
		m.zones[name] = z
	}
	return z
}

// enqueueLocked makes sure a job will look at the zone: it joins the running or queued
// job (which then checks once more when done) or starts a new one.
func (m *Manager) enqueueLocked(z *zone, hint Notify) *job {
	if j := z.job; j != nil {
		j.pending = true
		j.hint = hint
		return j
	}
	ctx, cancel := context.WithCancel(m.ctx)
	j := &job{gen: z.gen, cancel: cancel, hint: hint}
	z.job = j
	m.wg.Add(1)
	go m.run(ctx, z, j)
	return j
}

// Notify schedules a check of the zone and returns at once; the transfer runs later.
// A NOTIFY for a zone with work under way (a CREATE among it) folds into that work.
func (m *Manager) Notify(ctx context.Context, name string, n Notify) error {
	m.mu.Lock()
	if z := m.zones[name]; z != nil && z.job != nil {
		m.enqueueLocked(z, n)
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()

	serial, err := m.backend.Serial(ctx, name)
	if errors.Is(err, backend.ErrNotFound) {
		return ErrUnknownZone
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
func (m *Manager) Create(ctx context.Context, name string) error {
	if _, err := m.backend.Serial(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("create %s: %w", name, err)
	}
	m.mu.Lock()
	z := m.zoneLocked(name)
	j := z.job
	if j == nil || j.create == nil {
		j = m.enqueueLocked(z, Notify{})
		if j.create == nil {
			j.create = &waiter{done: make(chan struct{})}
		}
	}
	w := j.create
	m.mu.Unlock()

	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("create %s: not done in time, the transfer goes on: %w", name, ctx.Err())
	}
}

// Delete removes the zone from the backend. Queued work for it is dropped and running
// work cancelled; no transfer that started before can bring the zone back. A zone that
// does not exist is a success.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	z := m.zoneLocked(name)
	z.gen++
	if j := z.job; j != nil {
		j.cancel()
		z.job = nil
	}
	m.mu.Unlock()

	if err := lock(ctx, z.apply); err != nil {
		return fmt.Errorf("delete %s: waiting for a running apply: %w", name, err)
	}
	err := m.backend.Delete(ctx, name)
	unlock(z.apply)
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	m.mu.Lock()
	if z.job == nil && m.zones[name] == z {
		delete(m.zones, name) // a job still holding z sees the bumped gen and never applies
	}
	m.mu.Unlock()
	return nil
}

func lock(ctx context.Context, l chan struct{}) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func unlock(l chan struct{}) { <-l }

// run works on the zone until no more checks are pending.
func (m *Manager) run(ctx context.Context, z *zone, j *job) {
	defer m.wg.Done()
	defer j.cancel()
	if m.cfg.NotifyDelay > 0 {
		// Debounce: NOTIFYs arriving during the delay fold into this one check.
		select {
		case <-time.After(m.cfg.NotifyDelay):
		case <-ctx.Done():
		}
	}
	for {
		m.mu.Lock()
		j.pending = false
		hint, create := j.hint, j.create
		m.mu.Unlock()

		err := m.check(ctx, z, j.gen, hint, create != nil)
		switch {
		case err != nil && ctx.Err() != nil:
			m.log.Info("transfer cancelled (zone deleted or agent stopping)", zap.String("zone", z.name))
		case err != nil:
			m.log.Warn("transfer failed", zap.String("zone", z.name), zap.Error(err))
		}

		m.mu.Lock()
		if create != nil {
			create.err = err
			close(create.done)
			if j.create == create {
				j.create = nil
			}
		}
		if j.pending && ctx.Err() == nil {
			m.mu.Unlock()
			continue
		}
		if z.job == j {
			z.job = nil
		}
		if j.create != nil { // a CREATE arrived as the job was cancelled
			j.create.err = fmt.Errorf("create %s: cancelled: %w", z.name, context.Cause(ctx))
			close(j.create.done)
		}
		m.mu.Unlock()
		return
	}
}

// check brings the zone up to date with the masters (creating it if create is set).
func (m *Manager) check(ctx context.Context, z *zone, gen uint64, hint Notify, create bool) error {
	select {
	case m.workers <- struct{}{}:
		defer func() { <-m.workers }()
	case <-ctx.Done():
		return ctx.Err()
	}

	current, err := m.backend.Serial(ctx, z.name)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, backend.ErrNotFound):
		return err
	case exists && create:
		return nil // created meanwhile: CREATE is idempotent
	case !exists && !create:
		m.log.Info("zone no longer in the backend; nothing to refresh", zap.String("zone", z.name))
		return nil
	}

	var errs []error
	for _, master := range m.candidates(ctx, z.name, hint.Source) {
		if exists && !Newer(master.serial, current) {
			m.log.Debug("zone is up to date", zap.String("zone", z.name), zap.Stringer("master", master.addr),
				zap.Uint32("serial", current))
			return nil
		}
		err := m.transfer(ctx, z, gen, master.addr, exists, current)
		if err == nil || errors.Is(err, errDeleted) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("zone %s: no master answered its SOA query", z.name)
	}
	return errors.Join(errs...)
}

type candidate struct {
	addr   netip.AddrPort
	serial uint32
}

// candidates returns the masters to transfer from, best first: the NOTIFY's sender if it is
// a master and answers, otherwise every master that answers its SOA query, highest serial
// (RFC 1982) first. Masters that fail are logged and left out.
func (m *Manager) candidates(ctx context.Context, zoneName string, notifier netip.Addr) []candidate {
	masters := slices.Clone(m.cfg.Masters)
	if i := slices.IndexFunc(masters, func(a netip.AddrPort) bool { return a.Addr() == notifier }); i >= 0 {
		if serial, err := m.client.SOA(ctx, masters[i], zoneName); err == nil {
			return []candidate{{masters[i], serial}}
		} else {
			m.log.Warn("notifying master failed its SOA query", zap.String("zone", zoneName), zap.Error(err))
		}
		masters = slices.Delete(masters, i, i+1)
	}
	var found []candidate
	for _, master := range masters {
		serial, err := m.client.SOA(ctx, master, zoneName)
		if err != nil {
			m.log.Warn("master failed its SOA query", zap.String("zone", zoneName), zap.Error(err))
			continue
		}
		found = append(found, candidate{master, serial})
	}
	slices.SortStableFunc(found, func(a, b candidate) int {
		switch {
		case Newer(a.serial, b.serial):
			return -1
		case Newer(b.serial, a.serial):
			return 1
		}
		return 0
	})
	return found
}

// transfer reads the zone from master and applies it, unless the master's copy is not
// newer than what the backend holds or the zone was deleted meanwhile.
func (m *Manager) transfer(ctx context.Context, z *zone, gen uint64, master netip.AddrPort, exists bool, current uint32) error {
	start := time.Now()
	stream, err := m.client.AXFR(ctx, master, z.name)
	if err != nil {
		return err
	}
	defer stream.Close()
	if exists && !Newer(stream.Serial(), current) {
		return nil
	}
	if err := lock(ctx, z.apply); err != nil {
		return err
	}
	defer unlock(z.apply)
	m.mu.Lock()
	deleted := z.gen != gen
	m.mu.Unlock()
	if deleted {
		return errDeleted
	}
	if exists {
		err = m.backend.Replace(ctx, z.name, stream)
	} else {
		err = m.backend.Create(ctx, z.name, stream)
	}
	fields := []zap.Field{zap.String("zone", z.name), zap.Stringer("master", master), zap.String("type", "AXFR"),
		zap.Uint32("serial_to", stream.Serial()), zap.Int("records", stream.Records), zap.Int("bytes", stream.Bytes),
		zap.Duration("took", time.Since(start))}
	if exists {
		fields = append(fields, zap.Uint32("serial_from", current))
	}
	if err != nil {
		return fmt.Errorf("zone %s from %s: %w", z.name, master, err)
	}
	m.log.Info("transfer applied", fields...)
	return nil
}

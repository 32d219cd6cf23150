package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Zones is the main transfer engine: members are created and deleted through it, so
// they get the same transfers, retries, refresh and DELETE guarantees as any zone.
type Zones interface {
	Notify(ctx context.Context, zone string, n transfer.Notify) error
	Create(ctx context.Context, zone string) error
	// Ensure is Create at the background checks' pace (max_checks_per_second).
	Ensure(ctx context.Context, zone string) error
	Delete(ctx context.Context, zone string) error
}

// Serials tells whether the backend holds a zone (backend.Backend does).
type Serials interface {
	Serial(ctx context.Context, zone string) (uint32, error)
}

const (
	maxParallel   = 32              // member creates and deletes waited on at once
	maxRetryDelay = 5 * time.Minute // bound of the backoff for failed member changes
)

// Consumer consumes the configured catalog zones. It owns the catalogs' transfer engine,
// one goroutine that processes catalog versions one at a time (so ownership changes
// between catalogs never race), and one start-up goroutine per catalog that retries the
// first transfer until a master answers; Close stops them all.
type Consumer struct {
	cfg      Config
	main     Zones
	backend  Serials
	held     *memory.Backend   // the catalog zones themselves
	transfer *transfer.Manager // transfers the catalog zones into held
	log      *zap.Logger
	now      func() time.Time
	retryMin time.Duration

	ctx  context.Context // cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup
	wake chan struct{} // a catalog was kicked

	mu       sync.Mutex
	owners   map[string]owner // member zone -> the catalog that created it (persisted)
	catalogs map[string]*catalogState
	removing map[string]bool // member zones being deleted: a NOTIFY must not bring them back
}

// catalogState is what the consumer knows of one catalog. Fields are guarded by
// Consumer.mu.
type catalogState struct {
	name    string
	bringIn chan struct{} // wakes the start-up retry loop (a NOTIFY came)

	kicked    bool // processing wanted
	unchanged int  // checks that found the same version as before (confirm held removals)

	applied     *Catalog // the last version applied, nil until the first since start
	seen        uint32   // serial of the version held now
	hasSeen     bool
	lastCheck   time.Time
	lastChange  time.Time // the member list last changed
	broken      *BrokenError
	pending     *PendingRemoval
	ignored     map[string]string // listed members left alone, and why
	loops       map[string]string // owned members whose coo leads round a loop, and the coo's target
	failed      map[string]string // member zones whose change failed, and why; retried
	ensure      map[string]bool   // owned members to make sure exist at the next pass
	retries     int
	retryTimer  *time.Timer
	lastError   string
	lastErrorAt time.Time
}

// PendingRemoval is a version held back by the mass-deletion guard.
type PendingRemoval struct {
	Serial  uint32    `json:"serial"`
	Removes int       `json:"removes"` // member zones it would delete
	Of      int       `json:"of"`      // member zones the catalog owns
	Zones   []string  `json:"zones"`   // the first of them
	Since   time.Time `json:"since"`
	atCheck int       // unchanged checks seen when it was held
}

// New returns a consumer of cfg.Zones. The catalogs are transferred with tcfg (the agent's
// masters, TSIG key and timeouts); members are created and deleted through main, and
// be tells whether a zone exists already.
func New(cfg Config, tcfg transfer.Config, main Zones, be Serials, log *zap.Logger) *Consumer {
	ctx, stop := context.WithCancel(context.Background())
	c := &Consumer{
		cfg: cfg, main: main, backend: be, held: memory.New(), log: log, now: time.Now,
		retryMin: tcfg.RetryMin,
		ctx:      ctx, stop: stop, wake: make(chan struct{}, 1),
		owners: map[string]owner{}, catalogs: map[string]*catalogState{}, removing: map[string]bool{},
	}
	if c.retryMin <= 0 {
		c.retryMin = transfer.DefaultRetryMin
	}
	for _, name := range cfg.Zones {
		c.catalogs[name] = &catalogState{name: name, bringIn: make(chan struct{}, 1),
			ignored: map[string]string{}, failed: map[string]string{}, ensure: map[string]bool{}}
	}
	tcfg.OnChecked = c.checked
	tcfg.Index = nil                  // catalogs live in memory: replacing them is cheap, and their indexes are not the zones'
	tcfg.MetricsSubsystem = "catalog" // dnsagent_catalog_transfers_total, dnsagent_catalog_zones...
	c.transfer = transfer.NewManager(tcfg, c.held, log.Named("transfer"))
	return c
}

// Start loads the ownership records and starts consuming: every catalog is transferred
// (retried with backoff until a master answers) and processed after each check.
// Ownership recorded for catalogs no longer configured is released: those zones stay,
// and no catalog deletes them any more.
func (c *Consumer) Start(context.Context) error {
	if err := CheckStateFile(c.cfg.StateFile); err != nil {
		return fmt.Errorf("catalog_state_file %s: %w", c.cfg.StateFile, err)
	}
	owners, err := loadState(c.cfg.StateFile)
	if err != nil {
		return err
	}
	var released []string
	for zone, o := range owners {
		if c.catalogs[o.Catalog] == nil {
			released = append(released, zone)
			delete(owners, zone)
		}
	}
	if len(released) > 0 {
		sort.Strings(released)
		if err := saveState(c.cfg.StateFile, owners); err != nil {
			return err
		}
		c.log.Warn("member zones of catalogs no longer consumed are kept but released: no catalog deletes them any more",
			zap.Int("zones", len(released)), zap.Strings("first", released[:min(len(released), 10)]))
	}
	c.log.Info("consuming catalog zones", zap.Strings("catalogs", c.cfg.Zones),
		zap.String("state_file", c.cfg.StateFile), zap.Int("owned_zones", len(owners)))
	c.mu.Lock()
	c.owners = owners
	c.mu.Unlock()
	c.wg.Add(1 + len(c.catalogs))
	go c.loop()
	for _, st := range c.catalogs {
		go c.bringIn(st)
	}
	return nil
}

// Close stops processing, cancels the catalogs' transfers and member changes in flight,
// and waits for them to end.
func (c *Consumer) Close() {
	c.mu.Lock()
	for _, st := range c.catalogs {
		if st.retryTimer != nil {
			st.retryTimer.Stop()
		}
	}
	c.mu.Unlock()
	c.stop()
	c.transfer.Close()
	c.wg.Wait()
}

// bringIn transfers a catalog for the first time, retrying with backoff (or at once on
// a NOTIFY) until a master answers. From then on its transfer engine refreshes it.
func (c *Consumer) bringIn(st *catalogState) {
	defer c.wg.Done()
	delay := c.retryMin
	for {
		err := c.transfer.Create(c.ctx, st.name)
		if err == nil || c.ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		st.lastError, st.lastErrorAt = err.Error(), c.now()
		c.mu.Unlock()
		c.log.Warn("catalog zone not transferred yet; retrying", zap.String("catalog", st.name),
			zap.Error(err), zap.Duration("retry_in", delay))
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(transfer.Jitter(delay, 0.25)):
		case <-st.bringIn:
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// checked is the catalog transfer engine's OnChecked hook: a catalog was checked
// successfully, changed or not. It only marks the catalog for processing.
func (c *Consumer) checked(zone string, changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.catalogs[zone]
	if st == nil {
		return
	}
	st.lastCheck = c.now()
	if !changed {
		st.unchanged++
	}
	c.kickLocked(st)
}

func (c *Consumer) kickLocked(st *catalogState) {
	st.kicked = true
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// loop processes kicked catalogs one at a time until Close.
func (c *Consumer) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		for _, st := range c.takeKicked() {
			if c.ctx.Err() != nil {
				return
			}
			c.process(c.ctx, st)
		}
	}
}

func (c *Consumer) takeKicked() []*catalogState {
	c.mu.Lock()
	defer c.mu.Unlock()
	var kicked []*catalogState
	for _, name := range sortedKeys(c.catalogs) {
		if st := c.catalogs[name]; st.kicked {
			st.kicked = false
			kicked = append(kicked, st)
		}
	}
	return kicked
}

// process validates the catalog version held now and, if it is valid and something is
// to be done, reconciles the members with it.
func (c *Consumer) process(ctx context.Context, st *catalogState) {
	if cat, confirmed, ok := c.validate(st); ok {
		c.reconcile(ctx, st, cat, confirmed)
	}
}

// validate parses the version held now, records whether it is broken, and tells whether
// it has anything to do (and whether it confirms a held mass removal).
func (c *Consumer) validate(st *catalogState) (cat *Catalog, confirmed, ok bool) {
	rrs, held := c.held.Records(st.name)
	if !held {
		return nil, false, false
	}
	cat, err := Parse(st.name, rrs)
	c.mu.Lock()
	defer c.mu.Unlock()
	st.seen, st.hasSeen = soaSerial(rrs), true
	if err != nil {
		var broken *BrokenError
		errors.As(err, &broken)
		c.brokenLocked(st, broken, err)
		return nil, false, false
	}
	if st.broken != nil {
		c.log.Info("catalog is valid again", zap.String("catalog", st.name), zap.Uint32("serial", cat.Serial))
		st.broken = nil
	}
	confirmed = st.pending != nil && st.pending.Serial == cat.Serial && st.unchanged > st.pending.atCheck
	return cat, confirmed, confirmed || st.needsPass(cat.Serial)
}

// reconcile plans what the version changes, holds it back if it deletes too much, records
// the new ownership, then creates, resets and deletes member zones through the main engine.
func (c *Consumer) reconcile(ctx context.Context, st *catalogState, cat *Catalog, confirmed bool) {
	c.mu.Lock()
	in := c.planInputLocked(st, cat)
	c.mu.Unlock()
	in.held = c.presence(ctx, cat, in.owners)
	p := makePlan(in)
	if ctx.Err() != nil {
		return
	}

	c.mu.Lock()
	if p.tooManyDeletes(c.cfg.MaxRemoval) && !c.cfg.ConfirmRemoval && !confirmed {
		c.holdLocked(st, cat, p)
		maps.Copy(st.ensure, in.ensure) // still wanted once the version is applied
		c.mu.Unlock()
		return
	}
	if confirmed {
		c.log.Warn("mass removal confirmed: the catalog still serves the same version at a later check",
			zap.String("catalog", st.name), zap.Uint32("serial", cat.Serial), zap.Int("removes", p.deletes))
	}
	if !c.claimLocked(st, p) {
		maps.Copy(st.ensure, in.ensure)
		c.mu.Unlock()
		return
	}
	for zone, o := range p.handOffs {
		c.log.Info("member zone handed over to another catalog (coo)", zap.String("catalog", st.name),
			zap.String("zone", zone), zap.String("new_owner", o.Catalog))
		target := c.catalogs[o.Catalog]
		target.ensure[zone] = true // the new owner takes it up at its next pass
		c.kickLocked(target)
	}
	c.mu.Unlock()

	errs := c.execute(ctx, st.name, p.actions)
	if ctx.Err() != nil {
		return // stopping: the next start takes up where this left
	}
	c.mu.Lock()
	c.finishLocked(st, cat, p, errs)
	c.mu.Unlock()
}

// needsPass tells whether the version with serial has anything left to do.
func (st *catalogState) needsPass(serial uint32) bool {
	if st.pending != nil && st.pending.Serial == serial {
		return false // held: it waits for a confirmation
	}
	return st.applied == nil || st.applied.Serial != serial || len(st.failed) > 0 || len(st.ensure) > 0
}

func (c *Consumer) brokenLocked(st *catalogState, broken *BrokenError, err error) {
	if broken == nil {
		broken = &BrokenError{Catalog: st.name, Serial: st.seen, Reason: err.Error()}
	}
	if st.broken == nil || *st.broken != *broken {
		c.log.Error("catalog is broken: nothing is changed until a valid version comes; its member zones stay as they are",
			zap.String("catalog", st.name), zap.Uint32("serial", broken.Serial), zap.String("reason", broken.Reason))
	}
	st.broken = broken
}

func (c *Consumer) planInputLocked(st *catalogState, cat *Catalog) planInput {
	in := planInput{catalog: st.name, next: cat, prev: st.applied, owners: maps.Clone(c.owners),
		others: map[string]*Catalog{}, ensure: map[string]bool{}}
	for name, other := range c.catalogs {
		if name != st.name {
			in.others[name] = other.applied
		}
	}
	if st.applied == nil {
		// First version since start: make sure every member this catalog owns exists (a
		// crash may have come between recording a claim and the create).
		for zone, o := range c.owners {
			if o.Catalog == st.name {
				in.ensure[zone] = true
			}
		}
	}
	for zone := range st.ensure {
		in.ensure[zone] = true
	}
	clear(st.ensure) // taken up by this pass; a NOTIFY during it adds to the next
	for zone := range st.failed {
		in.ensure[zone] = true
	}
	return in
}

// presence asks the backend about every listed member nobody owns.
func (c *Consumer) presence(ctx context.Context, cat *Catalog, owners map[string]owner) map[string]presence {
	var (
		mu   sync.Mutex
		held = map[string]presence{}
		wg   sync.WaitGroup
		sem  = make(chan struct{}, maxParallel)
	)
	for zone := range cat.Members {
		if _, owned := owners[zone]; owned {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			state := unknown
			_, err := c.backend.Serial(ctx, zone)
			switch {
			case err == nil, errors.Is(err, backend.ErrNotOwned):
				state = present
			case errors.Is(err, backend.ErrNotFound):
				state = absent
			default:
				c.log.Warn("cannot tell whether a member zone exists", zap.String("catalog", cat.Zone),
					zap.String("zone", zone), zap.Error(err))
			}
			mu.Lock()
			held[zone] = state
			mu.Unlock()
		}()
	}
	wg.Wait()
	return held
}

// holdLocked keeps a version that would delete too many members from being applied.
func (c *Consumer) holdLocked(st *catalogState, cat *Catalog, p *plan) {
	if st.pending != nil && st.pending.Serial == cat.Serial {
		return
	}
	zones := p.deleted()
	st.pending = &PendingRemoval{Serial: cat.Serial, Removes: p.deletes, Of: p.owned, Zones: zones[:min(len(zones), 20)],
		Since: c.now(), atCheck: st.unchanged}
	c.log.Error("catalog version held back: it would delete more member zones than catalog_max_removal allows; "+
		"it is applied when a later check finds the same serial, or with catalog_confirm_removal = true",
		zap.String("catalog", st.name), zap.Uint32("serial", cat.Serial), zap.Int("removes", p.deletes),
		zap.Int("of", p.owned), zap.Float64("catalog_max_removal", c.cfg.MaxRemoval))
}

// claimLocked records the plan's new ownership before anything is created, so a crash
// never leaves a zone the catalog created without its owner. It reports false (and
// retries later) when the state file cannot be written: nothing may be done then.
func (c *Consumer) claimLocked(st *catalogState, p *plan) bool {
	if len(p.claims) > 0 || len(p.handOffs) > 0 {
		owners := maps.Clone(c.owners)
		maps.Copy(owners, p.claims)
		maps.Copy(owners, p.handOffs)
		if err := saveState(c.cfg.StateFile, owners); err != nil {
			st.lastError, st.lastErrorAt = err.Error(), c.now()
			c.log.Error("cannot record member ownership; the catalog is not applied", zap.String("catalog", st.name), zap.Error(err))
			c.armRetryLocked(st)
			return false
		}
		c.owners = owners
	}
	for _, a := range p.actions {
		if a.kind == actDelete || a.kind == actReset {
			c.removing[a.zone] = true
		}
	}
	return true
}

// execute runs the plan's actions against the main engine, many at once (the engine
// bounds the transfers), and returns each one's error.
func (c *Consumer) execute(ctx context.Context, catalog string, actions []action) []error {
	errs := make([]error, len(actions))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, a := range actions {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = c.apply(ctx, catalog, a)
		}()
	}
	wg.Wait()
	return errs
}

func (c *Consumer) apply(ctx context.Context, catalog string, a action) error {
	fields := []zap.Field{zap.String("catalog", catalog), zap.String("zone", a.zone)}
	var err error
	switch a.kind {
	case actCreate:
		if err = c.main.Create(ctx, a.zone); err == nil {
			c.log.Info("member zone created", fields...)
		}
	case actEnsure:
		// Retries, a restart's first pass, a NOTIFY: possibly every member at once, so
		// at the masters' background pace, where a new member is created as a CREATE is.
		err = c.main.Ensure(ctx, a.zone)
	case actReset:
		c.log.Info("member zone's unique label changed: deleting and creating it again", fields...)
		if err = c.main.Delete(ctx, a.zone); err == nil {
			c.unmarkRemoving(a.zone)
			err = c.main.Create(ctx, a.zone)
		}
		if err == nil {
			c.log.Info("member zone re-created", fields...)
		}
	case actDelete:
		if err = c.main.Delete(ctx, a.zone); err == nil {
			c.log.Info("member zone deleted: removed from the catalog", fields...)
		}
	}
	if err != nil && ctx.Err() == nil {
		c.log.Warn("member zone change failed; retrying later", append(fields, zap.String("action", a.kind.String()), zap.Error(err))...)
	}
	return err
}

func (c *Consumer) unmarkRemoving(zone string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.removing, zone)
}

// finishLocked records what applying the version did.
func (c *Consumer) finishLocked(st *catalogState, cat *Catalog, p *plan, errs []error) {
	ownersChanged := false
	failed := map[string]string{}
	for i, a := range p.actions {
		delete(c.removing, a.zone)
		switch {
		case errs[i] != nil:
			failed[a.zone] = a.kind.String() + ": " + errs[i].Error()
		case a.kind == actDelete:
			delete(c.owners, a.zone)
			ownersChanged = true
			c.offerLocked(st.name, a.zone)
		}
	}
	maps.Copy(failed, p.retry)
	if ownersChanged {
		if err := saveState(c.cfg.StateFile, c.owners); err != nil {
			// The zones are gone; the next start finds them missing and forgets them.
			c.log.Error("cannot record deleted member zones", zap.String("catalog", st.name), zap.Error(err))
		}
	}
	for zone, why := range p.ignored {
		if st.ignored[zone] != why {
			c.log.Warn("member zone ignored", zap.String("catalog", st.name), zap.String("zone", zone), zap.String("reason", why))
		}
	}
	for zone, target := range p.loops {
		if st.loops[zone] != target { // logged once, not at every pass
			c.log.Warn("member zone's coo not followed: it leads round a loop of catalogs back to this one (coo loop); "+
				"this catalog keeps the zone", zap.String("catalog", st.name), zap.String("zone", zone), zap.String("coo", target))
		}
	}
	st.loops = p.loops
	if st.applied == nil || !sameMembers(st.applied, cat) {
		st.lastChange = c.now()
	}
	st.ignored, st.failed, st.applied, st.pending = p.ignored, failed, cat, nil
	c.log.Info("catalog applied", zap.String("catalog", st.name), zap.Uint32("serial", cat.Serial),
		zap.Int("members", len(cat.Members)), zap.Int("created", p.count(actCreate)), zap.Int("reset", p.count(actReset)),
		zap.Int("deleted", p.deletes), zap.Int("handed_over", len(p.handOffs)), zap.Int("ignored", len(p.ignored)),
		zap.Int("failed", len(failed)))
	if len(failed) > 0 {
		c.armRetryLocked(st)
	} else {
		st.retries = 0
	}
}

// offerLocked hands a zone this catalog deleted to the other catalogs that list it: they
// left it alone while this one owned it (no coo, RFC 9432 §5.6), and now the first of
// them to take its next pass creates it, rather than waiting for its own serial to change.
func (c *Consumer) offerLocked(from, zone string) {
	for _, name := range sortedKeys(c.catalogs) {
		other := c.catalogs[name]
		if name == from || other.applied == nil {
			continue
		}
		if _, listed := other.applied.Members[zone]; listed {
			other.ensure[zone] = true
			c.kickLocked(other)
		}
	}
}

// armRetryLocked processes the catalog again later, backing off while it keeps failing.
func (c *Consumer) armRetryLocked(st *catalogState) {
	if st.retryTimer != nil {
		st.retryTimer.Stop()
	}
	delay := min(c.retryMin<<min(st.retries, 16), maxRetryDelay)
	st.retries++
	st.retryTimer = time.AfterFunc(transfer.Jitter(delay, 0.25), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.kickLocked(st)
	})
}

func soaSerial(rrs []dns.RR) uint32 {
	if soa, ok := rrs[0].(*dns.SOA); ok {
		return soa.Serial
	}
	return 0
}

func sameMembers(a, b *Catalog) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for zone, m := range a.Members {
		if n, ok := b.Members[zone]; !ok || n.Label != m.Label {
			return false
		}
	}
	return true
}

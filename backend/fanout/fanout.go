// Package fanout owns storing every zone in several backends at once (`backend_driver =
// powerdns, file`): one transfer is read once and streamed into every member that needs
// it, each member keeps its own serial, diff index and status, and a member that fails
// is retried, by the transfer engine, for that member alone.
//
// To the engine the fan-out is one backend whose serial is the oldest any member holds:
// while one member lags, the engine keeps transferring, and members that already hold
// the new version are skipped. Every member holds the old complete version or the new
// complete one, as each member alone guarantees.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

// Member is one backend of a fan-out.
type Member struct {
	Name    string // the backend_driver name, shown in /zones/NAME
	Backend backend.Backend
	Index   *zonediff.Index // this member's own diff index (its versions differ from the others'); nil: full zones replace
}

// Status is what the fan-out knows of one member's copy of a zone.
type Status struct {
	// Serial is the serial the member was last seen to hold. While the member cannot be
	// read it stands for the member: the engine transfers again when the primary is newer.
	Serial      *uint32   `json:"serial,omitempty"`
	State       string    `json:"state"` // "ok", or "failing" until the member holds the version the others hold
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures"` // consecutive failed operations
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastApply says how the last version reached the member: create, diff, replace, ixfr,
	// or "held" when it held that version already.
	LastApply   string `json:"last_apply,omitempty"`
	ApplyReason string `json:"apply_reason,omitempty"`
}

// Backend is the fan-out over its members. It implements backend.Backend,
// backend.Incremental, backend.Checker and backend.Sweeper.
type Backend struct {
	members []Member
	now     func() time.Time

	mu    sync.Mutex
	zones map[string][]Status // one per member, in members' order
}

var (
	_ backend.Backend     = (*Backend)(nil)
	_ backend.Incremental = (*Backend)(nil)
	_ backend.Checker     = (*Backend)(nil)
	_ backend.Sweeper     = (*Backend)(nil)
	_ backend.Reader      = (*Backend)(nil)
)

// New returns the fan-out over members (at least two, distinct names).
func New(members []Member) (*Backend, error) {
	if len(members) < 2 {
		return nil, errors.New("a fan-out needs at least two backends")
	}
	seen := map[string]bool{}
	for _, m := range members {
		if seen[m.Name] {
			return nil, fmt.Errorf("backend %q is listed twice", m.Name)
		}
		seen[m.Name] = true
	}
	return &Backend{members: members, now: time.Now, zones: map[string][]Status{}}, nil
}

// each runs fn for every member at once and waits for all: a slow member delays the
// answer, never another member's work.
func (b *Backend) each(fn func(i int, m Member)) {
	var wg sync.WaitGroup
	for i, m := range b.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, m)
		}()
	}
	wg.Wait()
}

// serials asks every member for its serial of zone and records what it learnt.
func (b *Backend) serials(ctx context.Context, zone string) ([]uint32, []error) {
	serials, errs := make([]uint32, len(b.members)), make([]error, len(b.members))
	b.each(func(i int, m Member) {
		serials[i], errs[i] = m.Backend.Serial(ctx, zone)
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.statusLocked(zone, slices.ContainsFunc(errs, func(err error) bool { return err == nil }))
	if st == nil {
		return serials, errs
	}
	newest, found := uint32(0), false
	for i, err := range errs {
		if err == nil && (!found || backend.Newer(serials[i], newest)) {
			newest, found = serials[i], true
		}
	}
	for i, err := range errs {
		switch {
		case err == nil:
			st[i].Serial = &serials[i]
			if st[i].State == "failing" && serials[i] == newest {
				st[i].State = "ok" // readable again, and not behind the others
			}
		case errors.Is(err, backend.ErrNotFound):
			st[i].Serial = nil
		default:
			st[i].State, st[i].LastError, st[i].LastErrorAt = "failing", err.Error(), b.now()
		}
	}
	return serials, errs
}

// statusLocked returns the statuses of zone, creating them if create is set; nil if the
// zone has none (a zone no member holds is not remembered).
func (b *Backend) statusLocked(zone string, create bool) []Status {
	st := b.zones[zone]
	if st == nil && create {
		st = make([]Status, len(b.members))
		for i := range st {
			st[i].State = "ok"
		}
		b.zones[zone] = st
	}
	return st
}

// join names each member's error; nil when there is none.
func (b *Backend) join(errs []error) error {
	var named []error
	for i, err := range errs {
		if err != nil {
			named = append(named, fmt.Errorf("backend %s: %w", b.members[i].Name, err))
		}
	}
	return errors.Join(named...)
}

// failedLocked records a failed operation (a transfer applied, a delete) on a member.
func (b *Backend) failedLocked(st *Status, err error) {
	st.State, st.LastError, st.LastErrorAt = "failing", err.Error(), b.now()
	st.Failures++
}

// Serial returns the oldest serial any member holds (RFC 1982), so the engine transfers
// until every member holds the primary's version. A member that cannot be read counts
// with the serial it was last seen to hold; one never seen fails the call, as the
// engine cannot know what it lacks. A zone missing from any member is ErrNotFound: a
// CREATE completes it.
func (b *Backend) Serial(ctx context.Context, zone string) (uint32, error) {
	serials, errs := b.serials(ctx, zone)
	b.mu.Lock()
	st := b.zones[zone]
	b.mu.Unlock()
	var (
		oldest  uint32
		known   bool
		missing bool
		failed  = make([]error, len(errs))
	)
	for i, err := range errs {
		s := serials[i]
		switch {
		case errors.Is(err, backend.ErrNotFound):
			missing = true
			continue
		case err != nil:
			b.mu.Lock()
			last := st != nil && st[i].Serial != nil
			if last {
				s = *st[i].Serial
			}
			b.mu.Unlock()
			if !last {
				failed[i] = err
				continue
			}
		}
		if !known || backend.Newer(oldest, s) {
			oldest, known = s, true
		}
	}
	if err := b.join(failed); err != nil {
		return 0, err
	}
	if missing {
		return 0, b.join(errs) // the members lacking the zone, each named
	}
	return oldest, nil
}

// Zones lists the zones any member holds. Every member must answer: a fan-out with a
// member down is not ready.
func (b *Backend) Zones(ctx context.Context) ([]string, error) {
	lists, errs := make([][]string, len(b.members)), make([]error, len(b.members))
	b.each(func(i int, m Member) {
		lists[i], errs[i] = m.Backend.Zones(ctx)
	})
	if err := b.join(errs); err != nil {
		return nil, err
	}
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// Delete removes the zone from every member; ErrNotFound only when no member held it.
func (b *Backend) Delete(ctx context.Context, zone string) error {
	errs := make([]error, len(b.members))
	b.each(func(i int, m Member) {
		errs[i] = m.Backend.Delete(ctx, zone)
		if m.Index != nil {
			m.Index.Drop(zone)
		}
	})
	notFound := 0
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.zones[zone]
	for i, err := range errs {
		switch {
		case errors.Is(err, backend.ErrNotFound):
			notFound++
			errs[i] = nil
		case err != nil && st != nil:
			b.failedLocked(&st[i], err)
		}
	}
	if err := b.join(errs); err != nil {
		return err
	}
	delete(b.zones, zone)
	if notFound == len(b.members) {
		return fmt.Errorf("delete %s: %w", zone, backend.ErrNotFound)
	}
	return nil
}

// Status reports each member's copy of zone, by member name; nil if no member holds it.
func (b *Backend) Status(zone string) map[string]Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.zones[zone]
	if st == nil {
		return nil
	}
	out := make(map[string]Status, len(st))
	for i, s := range st {
		if s.Serial != nil {
			serial := *s.Serial
			s.Serial = &serial
		}
		out[b.members[i].Name] = s
	}
	return out
}

// Check checks every member that can be checked.
func (b *Backend) Check(ctx context.Context) error {
	errs := make([]error, len(b.members))
	b.each(func(i int, m Member) {
		if c, ok := m.Backend.(backend.Checker); ok {
			errs[i] = c.Check(ctx)
		}
	})
	return b.join(errs)
}

// Sweep clears what an earlier run left half-written in every member.
func (b *Backend) Sweep(ctx context.Context) error {
	errs := make([]error, len(b.members))
	b.each(func(i int, m Member) {
		if s, ok := m.Backend.(backend.Sweeper); ok {
			errs[i] = s.Sweep(ctx)
		}
	})
	return b.join(errs)
}

// ErrNotOneZone is what reading a fan-out back gives: its backends may hold different
// versions, so there is no one zone to show or compare.
var ErrNotOneZone = errors.New("a fan-out (several backend_driver) holds one copy per backend, not one zone: " +
	"run verify, dump or resync with a configuration naming one of them")

// Read implements backend.Reader by refusing: without it, resync would fall back to a
// replace that every member at the primary's serial skips, and report a repair it never
// made. verify, dump and resync thus fail clearly and change nothing.
func (b *Backend) Read(context.Context, string, func([]dns.RR) error) error {
	return ErrNotOneZone
}

package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

// Create stores the zone in every member lacking it; members holding an older version
// get the new one, members holding it already are left alone. It fails when every
// member holds the zone.
func (b *Backend) Create(ctx context.Context, zone string, src backend.Source) error {
	return b.store(ctx, zone, src, true)
}

// Replace brings every member to the version src streams, skipping the members that hold
// it (or a newer one) already. A member lacking the zone fails with ErrNotFound.
func (b *Backend) Replace(ctx context.Context, zone string, src backend.Source) error {
	return b.store(ctx, zone, src, false)
}

// work is what one member does with a full zone.
type work struct {
	skip    bool
	exists  bool
	current uint32
	err     error // the member failed before any work
}

func (b *Backend) store(ctx context.Context, zone string, src backend.Source, create bool) error {
	ctx = backend.WithCommitted(ctx, nil) // one member committed is not all of them
	if err := backend.ValidateZoneName(zone); err != nil {
		return err // before reading anything: the source is not for us
	}
	first, serial, err := readHead(zone, src)
	if err != nil {
		return err
	}
	serials, errs := b.serials(ctx, zone)
	plans := make([]work, len(b.members))
	missing, busy := 0, 0
	for i, err := range errs {
		switch {
		case errors.Is(err, backend.ErrNotFound):
			missing++
			plans[i] = work{err: err}
			if create {
				plans[i] = work{}
			}
		case err != nil:
			plans[i] = work{err: err}
		case !backend.Newer(serial, serials[i]):
			plans[i] = work{skip: true, exists: true, current: serials[i]}
		default:
			plans[i] = work{exists: true, current: serials[i]}
		}
		if plans[i].err == nil && !plans[i].skip {
			busy++
		}
	}
	if create && missing == 0 {
		failed := make([]error, len(plans))
		for i, p := range plans {
			failed[i] = p.err
		}
		return errors.Join(fmt.Errorf("create %s: the zone exists in every backend that answered", zone), b.join(failed))
	}
	var s *splitter
	if busy > 0 {
		s = split(src, first, busy)
		defer s.stop()
	}
	results, errs := make([]zonediff.Result, len(b.members)), make([]error, len(b.members))
	taps := 0
	tapOf := make([]*tap, len(b.members))
	for i, p := range plans {
		if p.err == nil && !p.skip {
			tapOf[i] = s.taps[taps]
			taps++
		}
	}
	b.each(func(i int, m Member) {
		p := plans[i]
		switch {
		case p.err != nil:
			errs[i] = p.err
		case p.skip:
			results[i].Apply = "held"
		default:
			results[i], errs[i] = full(ctx, m, zone, p, tapOf[i])
			tapOf[i].Close()
		}
	})
	b.record(zone, serial, results, errs)
	return b.join(errs)
}

// full applies the zone to one member, through its diff index when it has one.
func full(ctx context.Context, m Member, zone string, p work, src backend.Source) (zonediff.Result, error) {
	if m.Index != nil {
		return m.Index.Full(ctx, m.Backend, zone, p.exists, p.current, src)
	}
	if p.exists {
		return zonediff.Result{Apply: "replace"}, m.Backend.Replace(ctx, zone, src)
	}
	return zonediff.Result{Apply: "create"}, m.Backend.Create(ctx, zone, src)
}

// readHead reads up to the first record, which must be the zone's SOA, and returns what
// it read with the serial.
func readHead(zone string, src backend.Source) (item, uint32, error) {
	for {
		batch, err := src.Next()
		if err != nil && err != io.EOF {
			return item{}, 0, fmt.Errorf("transfer failed: %w", err)
		}
		if len(batch) > 0 {
			soa, ok := batch[0].(*dns.SOA)
			if !ok || !dns.IsSubDomain(zone, soa.Hdr.Name) || !dns.IsSubDomain(soa.Hdr.Name, zone) {
				return item{}, 0, fmt.Errorf("stream does not start with the SOA of %s (first record: %s)", zone, batch[0])
			}
			return item{batch, err}, soa.Serial, nil
		}
		if err == io.EOF {
			return item{}, 0, fmt.Errorf("empty stream: no SOA for %s", zone)
		}
	}
}

// record notes each member's outcome of bringing zone to serial.
func (b *Backend) record(zone string, serial uint32, results []zonediff.Result, errs []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st []Status
	for i, err := range errs {
		if err != nil && errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if st == nil {
			if st = b.statusLocked(zone, err == nil); st == nil {
				continue
			}
		}
		if err != nil {
			b.failedLocked(&st[i], err)
			continue
		}
		s := serial
		if results[i].Apply == "held" && st[i].Serial != nil {
			s = *st[i].Serial
		}
		st[i].Serial, st[i].State, st[i].Failures, st[i].LastSuccess = &s, "ok", 0, b.now()
		st[i].LastApply, st[i].ApplyReason = results[i].Apply, results[i].Reason
	}
}

// Apply applies the change set to every member holding its first serial; members holding
// its last serial (or newer) are skipped. A member holding another version fails with
// ErrInconsistent, so the engine falls back to a full transfer, which the members already
// up to date skip.
func (b *Backend) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	ctx = backend.WithCommitted(ctx, nil) // as in store
	serials, errs := b.serials(ctx, zone)
	results := make([]zonediff.Result, len(b.members))
	applying := 0
	b.each(func(i int, m Member) {
		switch {
		case errs[i] != nil:
		case serials[i] == cs.From():
			results[i].Apply = "ixfr"
		case !backend.Newer(cs.To(), serials[i]):
			results[i].Apply = "held"
		default:
			errs[i] = fmt.Errorf("%w: it holds serial %d, the change set starts at %d", backend.ErrInconsistent, serials[i], cs.From())
		}
	})
	// Backends may set fields of the records they are given (packing sets the length):
	// each member applying the change set gets its own copy.
	sets := make([]*backend.ChangeSet, len(b.members))
	for i := range b.members {
		if results[i].Apply == "ixfr" {
			if sets[i] = cs; applying > 0 {
				sets[i] = copyChangeSet(cs)
			}
			applying++
		}
	}
	b.each(func(i int, m Member) {
		if sets[i] == nil {
			return
		}
		inc, ok := m.Backend.(backend.Incremental)
		if !ok {
			errs[i] = fmt.Errorf("%w: it applies full zones only", backend.ErrInconsistent)
			return
		}
		if m.Index != nil {
			m.Index.Drop(zone) // it describes the version before the change set
		}
		errs[i] = inc.Apply(ctx, zone, sets[i])
	})
	b.record(zone, cs.To(), results, errs)
	return b.join(errs)
}

func copyChangeSet(cs *backend.ChangeSet) *backend.ChangeSet { return cs.Copy() }

func copyBatch(batch []dns.RR) []dns.RR {
	if batch == nil {
		return nil
	}
	out := make([]dns.RR, len(batch))
	for i, rr := range batch {
		out[i] = dns.Copy(rr)
	}
	return out
}

package transfer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonecompare"
)

// ErrNoReader: the backend cannot read a zone back (no backend.Reader).
var ErrNoReader = errors.New("the backend cannot read zones back")

// Verify compares what the backend really holds (backend.Reader, not the agent's index)
// with the zone of the master serving the newest serial. It changes nothing.
func (m *Manager) Verify(ctx context.Context, name string) (*zonecompare.Result, error) {
	reader, ok := m.backend.(backend.Reader)
	if !ok {
		return nil, fmt.Errorf("verify %s: %w", name, ErrNoReader)
	}
	var res *zonecompare.Result
	err := m.fromMaster(ctx, name, func(_ *Stream, src *timedSource) error {
		var err error
		res, err = zonecompare.Compare(ctx, name, readOf(reader, name), src, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", name, err)
	}
	return res, nil
}

// fromMaster runs use on a full transfer of the zone from the master serving the newest
// serial, trying the next master when a transfer fails.
func (m *Manager) fromMaster(ctx context.Context, name string, use func(*Stream, *timedSource) error) error {
	defer m.working()()
	masters, err := m.candidates(ctx, name, netip.Addr{}, false) // an operator asked: urgent (no pacing)
	if err != nil {
		return err
	}
	var errs []error
	for _, master := range masters {
		stream, err := m.client.AXFR(ctx, master.addr, name)
		wire := err != nil
		if err == nil {
			src := &timedSource{src: stream}
			err = use(stream, src)
			stream.Close()
			wire = src.err != nil
		}
		m.noteMaster(master.addr, err)
		if err == nil || !wire || ctx.Err() != nil {
			return err // done, or failed in the backend: another master would not help
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func readOf(r backend.Reader, zone string) zonecompare.ReadFunc {
	return func(ctx context.Context, each func([]dns.RR) error) error { return r.Read(ctx, zone, each) }
}

// Resync brings the zone to the primary's version whatever the agent believes the
// backend holds: it reads a full transfer, compares it with what the backend really
// holds, and applies the difference through backend.Incremental (a row changed behind
// the agent's back is repaired), or a full replace when the difference is large or the
// backend cannot apply changes in place. It runs as the zone's apply, under the same lock
// as the scheduler's transfers, so it never races them. The zone's index is dropped (it
// may describe a version the backend no longer holds), so the next full zone is a replace
// that writes a fresh one.
func (m *Manager) Resync(ctx context.Context, name string) (*zonecompare.Result, *Summary, error) {
	if _, err := m.backend.Serial(ctx, name); err != nil {
		return nil, nil, fmt.Errorf("resync %s: %w", name, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("resync %s: %w", name, errStopping)
	}
	z := m.zoneLocked(name)
	gen := z.gen
	m.mu.Unlock()
	select {
	case m.workers <- struct{}{}:
		defer func() { <-m.workers }()
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}

	reader, canRead := m.backend.(backend.Reader)
	inc, canApply := m.backend.(backend.Incremental)
	var res *zonecompare.Result
	sum := &Summary{Zone: name, Type: "AXFR", At: m.now()}
	err := m.applying(ctx, z, gen, sum, func() error {
		if m.cfg.Index != nil {
			m.cfg.Index.Drop(name)
		}
		current, err := m.backend.Serial(ctx, name)
		if err != nil {
			return err
		}
		sum.From = current
		if canRead && canApply {
			err = m.fromMaster(ctx, name, func(stream *Stream, src *timedSource) error {
				sum.Master, sum.To = stream.master.String(), stream.Serial()
				res, err = zonecompare.Compare(ctx, name, readOf(reader, name), src, 0)
				sum.Records, sum.Bytes = stream.zoneRecords(), stream.Bytes
				return err
			})
			if err != nil {
				return err
			}
			if res.Equal {
				sum.Path = "none"
				return nil
			}
			if cs := res.ChangeSet(); cs != nil && float64(res.Records()) <= resyncMaxRatio*float64(max(res.HeldRecords, res.PrimaryRecords)) {
				sum.Path = "diff"
				sum.Deleted, sum.Added = cs.Size()
				err := inc.Apply(ctx, name, cs)
				if !errors.Is(err, backend.ErrInconsistent) {
					return err
				}
				// What is held cannot be patched (a zone file edited by hand, in a form
				// the file backend does not write): the full zone replaces it.
				sum.Deleted, sum.Added = 0, 0
				sum.PathReason = fmt.Sprintf("the difference does not apply: %v", err)
			} else {
				sum.PathReason = fmt.Sprintf("%d records differ", res.Records())
			}
		} else {
			sum.PathReason = "the backend cannot read zones back or apply changes in place"
		}
		sum.Path = "replace"
		return m.fromMaster(ctx, name, func(stream *Stream, src *timedSource) error {
			sum.Master, sum.To = stream.master.String(), stream.Serial()
			err := m.backend.Replace(ctx, name, src)
			sum.Records, sum.Bytes = stream.zoneRecords(), stream.Bytes
			return err
		})
	})
	sum.setResult(err)
	m.logSummary(sum, err, true)
	m.mu.Lock()
	if err == nil && m.zones[name] == z {
		z.sched.applied, z.sched.hasApplied = sum.To, true
		z.sched.lastTransfer = keep(sum, m.cfg.Masters)
	}
	m.mu.Unlock()
	if err != nil {
		return res, sum, fmt.Errorf("resync %s: %w", name, err)
	}
	m.log.Info("resync", zap.String("zone", name), zap.String("apply", sum.Path), zap.Int("deleted", sum.Deleted),
		zap.Int("added", sum.Added))
	return res, sum, nil
}

// resyncMaxRatio: a larger difference (records deleted plus added, over the larger
// version) is applied as a full replace, as diff_max_ratio does for full transfers.
const resyncMaxRatio = 0.3

package transfer

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Summary describes one transfer: the log line and the zone status show it.
type Summary struct {
	Zone     string        `json:"zone"`
	Master   string        `json:"master"`
	Type     string        `json:"type"`               // AXFR, IXFR, or IXFR-full (the primary sent the whole zone)
	Fallback string        `json:"fallback,omitempty"` // why an IXFR was abandoned for this AXFR
	From     uint32        `json:"serial_from"`
	To       uint32        `json:"serial_to"`
	Records  int           `json:"records"`
	Bytes    int           `json:"bytes"`
	Transfer time.Duration `json:"transfer_ns"` // waiting for the primary
	Apply    time.Duration `json:"apply_ns"`    // working in the backend
	// How a full zone was applied to a held zone: "diff" (only the difference, Deleted
	// and Added records) or "replace" (the whole zone, for PathReason); "create" for a new
	// zone, "ixfr" for an incremental transfer.
	Path       string    `json:"apply,omitempty"`
	PathReason string    `json:"apply_reason,omitempty"`
	IndexError string    `json:"index_error,omitempty"` // applied, but its diff index not written (log line only)
	Deleted    int       `json:"deleted,omitempty"`
	Added      int       `json:"added,omitempty"`
	Result     string    `json:"result"` // "applied", or what went wrong
	At         time.Time `json:"at"`

	soa *soaTimes // the SOA a full transfer started with
}

func (s *Summary) setResult(err error) {
	s.Result = "applied"
	if err != nil {
		s.Result = err.Error()
	}
}

// transferError marks a failure of the primary or the wire, as opposed to the backend's:
// an IXFR failing this way falls back to AXFR.
type transferError struct{ err error }

func (e *transferError) Error() string { return e.err.Error() }
func (e *transferError) Unwrap() error { return e.err }

// fallsBack tells whether an IXFR failure should be retried as an AXFR at once: an error
// rcode, a transport error or stall, or a history that does not fit what we hold.
func fallsBack(err error) bool {
	var te *transferError
	return errors.As(err, &te) || errors.Is(err, backend.ErrInconsistent) || errors.Is(err, errIXFRHistory)
}

// axfrLater is an IXFR from master that failed on the wire (stall, cut, error rcode) while
// another master serves the same version: that one is tried before this one's AXFR, for a
// master that hung once is likely to hang again, and each hang costs a stall timeout.
type axfrLater struct {
	master netip.AddrPort
	err    error
}

func (e *axfrLater) Error() string { return e.err.Error() }
func (e *axfrLater) Unwrap() error { return e.err }

// update brings the zone to master's version: by IXFR when the zone exists and the backend
// can apply changes in place, falling back to AXFR when that fails. With elsewhere (another
// master serves the same version), an IXFR failing on the wire returns an *axfrLater
// instead of falling back at once.
func (m *Manager) update(ctx context.Context, z *zone, gen uint32, master netip.AddrPort, exists bool, current uint32,
	elsewhere bool) (*Summary, error) {
	inc, ok := m.backend.(backend.Incremental)
	if !ok || !exists {
		return m.full(ctx, z, gen, master, exists, current, "")
	}
	sum := &Summary{Zone: z.name, Master: master.String(), From: current, At: m.now()}
	err := m.incremental(ctx, z, gen, master, current, inc, sum)
	if err == nil || !fallsBack(err) || ctx.Err() != nil {
		sum.setResult(err)
		return sum, err
	}
	var te *transferError
	if elsewhere && errors.As(err, &te) && !errors.Is(err, errIXFRHistory) {
		m.log.Info("IXFR failed, trying another master with this version before an AXFR from this one",
			zap.String("zone", z.name), zap.Stringer("master", master), zap.Error(err))
		sum.setResult(err)
		return sum, &axfrLater{master, err}
	}
	m.log.Info("IXFR failed, falling back to AXFR", zap.String("zone", z.name), zap.Stringer("master", master), zap.Error(err))
	if err := m.waitTurn(ctx, master); err != nil { // the AXFR is a second request
		sum.setResult(err)
		return sum, err
	}
	return m.full(ctx, z, gen, master, exists, current, err.Error())
}

// full transfers the whole zone from master by AXFR; fallback says why an IXFR was
// abandoned for it, if one was.
func (m *Manager) full(ctx context.Context, z *zone, gen uint32, master netip.AddrPort, exists bool, current uint32,
	fallback string) (*Summary, error) {
	sum := &Summary{Zone: z.name, Master: master.String(), Type: "AXFR", From: current, At: m.now(), Fallback: fallback}
	start := m.now()
	stream, err := m.client.AXFR(ctx, master, z.name)
	sum.Transfer = m.now().Sub(start)
	if err == nil {
		err = m.applyFull(ctx, z, gen, stream, exists, current, sum)
	}
	sum.setResult(err)
	return sum, err
}

// incremental applies the changes since current, or the full zone if the primary sends it.
func (m *Manager) incremental(ctx context.Context, z *zone, gen uint32, master netip.AddrPort, current uint32,
	inc backend.Incremental, sum *Summary) error {
	sum.Type = "IXFR"
	start := m.now()
	res, err := m.client.IXFR(ctx, master, z.name, current)
	if err != nil {
		return &transferError{err}
	}
	if res.Full != nil {
		sum.Type = "IXFR-full"
		return m.applyFull(ctx, z, gen, res.Full, true, current, sum)
	}
	sum.Records, sum.Bytes, sum.Transfer, sum.To = res.Records, res.Bytes, m.now().Sub(start), current
	if res.UpToDate {
		return nil
	}
	defer res.Changes.Close()
	sum.To = res.Changes.To()
	sum.Path = "ixfr"
	sum.Deleted, sum.Added = res.Changes.Size()
	return m.applying(ctx, z, gen, sum, func() error {
		if m.cfg.Index != nil {
			m.cfg.Index.Drop(z.name) // it describes the version before the change set
		}
		return inc.Apply(ctx, z.name, res.Changes)
	})
}

// applyFull streams a full zone into the backend, unless it is not newer than ours.
func (m *Manager) applyFull(ctx context.Context, z *zone, gen uint32, stream *Stream, exists bool, current uint32, sum *Summary) error {
	defer stream.Close()
	sum.To, sum.soa = stream.Serial(), soaTimesOf(stream.soa)
	if exists && !Newer(stream.Serial(), current) {
		return nil
	}
	src := &timedSource{src: stream}
	err := m.applying(ctx, z, gen, sum, func() error {
		if m.cfg.Index != nil {
			res, err := m.cfg.Index.Full(ctx, m.backend, z.name, exists, current, src)
			sum.Path, sum.PathReason, sum.Deleted, sum.Added = res.Apply, res.Reason, res.Deleted, res.Added
			sum.IndexError = res.IndexErr
			return err
		}
		if exists {
			sum.Path = "replace"
			return m.backend.Replace(ctx, z.name, src)
		}
		sum.Path = "create"
		return m.backend.Create(ctx, z.name, src)
	})
	// Records stream while the backend writes them: time spent waiting for the primary
	// counts as transfer time, the rest as apply time.
	sum.Records, sum.Bytes = stream.zoneRecords(), stream.Bytes
	sum.Transfer += src.waited
	sum.Apply -= src.waited
	if err != nil && src.err != nil && errors.Is(err, src.err) {
		return &transferError{err}
	}
	return err
}

// applying runs apply under the zone's apply lock, unless a DELETE came since the job
// started, and adds the time it took to sum.Apply.
func (m *Manager) applying(ctx context.Context, z *zone, gen uint32, sum *Summary, apply func() error) error {
	if err := m.lockApply(ctx, z); err != nil {
		return err
	}
	defer m.unlockApply(z)
	m.mu.Lock()
	deleted := z.gen != gen
	m.mu.Unlock()
	if deleted {
		return errDeleted
	}
	start := m.now()
	err := apply()
	sum.Apply += m.now().Sub(start)
	return err
}

// timedSource measures how long the backend waited for the primary's records.
type timedSource struct {
	src    backend.Source
	waited time.Duration
	err    error // the source's own failure, if any
}

// A backend reading the transfer on a goroutine of its own frees it through these.
var (
	_ backend.Interrupter = (*timedSource)(nil)
	_ backend.Interrupter = (*Stream)(nil)
)

// Interrupt interrupts the transfer stream: a read blocked on it, on another goroutine,
// returns an error.
func (t *timedSource) Interrupt() {
	if i, ok := t.src.(backend.Interrupter); ok {
		i.Interrupt()
	}
}

func (t *timedSource) Next() ([]dns.RR, error) {
	start := time.Now()
	batch, err := t.src.Next()
	t.waited += time.Since(start)
	if err != nil && !errors.Is(err, io.EOF) {
		t.err = err
	}
	return batch, err
}

// logSummary counts a transfer and logs its summary: at info once applied, at warn when
// it failed unless warn is false (debug then).
func (m *Manager) logSummary(s *Summary, err error, warn bool) {
	var te *transferError
	m.metrics.observe(s, err != nil && !errors.As(err, &te) && !errors.Is(err, errDeleted) && !errors.Is(err, context.Canceled))
	fields := []zap.Field{zap.String("zone", s.Zone), zap.String("master", s.Master), zap.String("type", s.Type),
		zap.Uint32("serial_from", s.From), zap.Uint32("serial_to", s.To), zap.Int("records", s.Records),
		zap.Int("bytes", s.Bytes), zap.Duration("transfer_time", s.Transfer), zap.Duration("apply_time", s.Apply),
		zap.String("result", s.Result)}
	if s.Fallback != "" {
		fields = append(fields, zap.String("fallback_reason", s.Fallback))
	}
	if s.Path != "" {
		fields = append(fields, zap.String("apply", s.Path))
	}
	if s.PathReason != "" {
		fields = append(fields, zap.String("apply_reason", s.PathReason))
	}
	if s.Path == "diff" || s.Path == "ixfr" {
		fields = append(fields, zap.Int("deleted", s.Deleted), zap.Int("added", s.Added))
	}
	if s.IndexError != "" {
		fields = append(fields, zap.String("index_error", s.IndexError))
	}
	switch {
	case s.Result == "applied" && s.IndexError != "":
		m.log.Warn("transfer", fields...) // served, but the index's directory wants a look
	case s.Result == "applied":
		m.log.Info("transfer", fields...)
	case warn:
		m.log.Warn("transfer", fields...)
	default:
		m.log.Debug("transfer", fields...)
	}
}

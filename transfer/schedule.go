package transfer

import (
	"errors"
	"sort"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// SOA timer values used until a master's SOA has been seen (RFC 1912 §2.2 ranges).
const (
	defaultRefresh = time.Hour
	defaultRetry   = 10 * time.Minute
	defaultExpire  = 7 * 24 * time.Hour
	minRefresh     = 30 * time.Second // a zone with refresh 0 must not turn into a busy loop

	failureLogInterval = 10 * time.Second // failed CREATEs: one log line per interval
)

// soaTimes is what the scheduler keeps of a master's SOA: 16 bytes, not a whole dns.SOA
// with its three names.
type soaTimes struct{ serial, refresh, retry, expire uint32 }

func soaTimesOf(soa *dns.SOA) *soaTimes {
	return &soaTimes{serial: soa.Serial, refresh: soa.Refresh, retry: soa.Retry, expire: soa.Expire}
}

// instant is a moment as the manager keeps it for every zone: the time since its epoch,
// 8 bytes where a time.Time takes 24 (issue 15: every byte of zone state is 100 kB with
// 100,000 zones). Measured on the monotonic clock, as time.Time's Sub would. The epoch is
// a second before the manager started, so 0 is no moment: none.
type instant time.Duration

func (m *Manager) instant(t time.Time) instant { return instant(t.Sub(m.epoch)) }

func (m *Manager) nowInstant() instant { return m.instant(m.now()) }

// timeOf is the time of i, the zero time for none.
func (m *Manager) timeOf(i instant) time.Time {
	if i == 0 {
		return time.Time{}
	}
	return m.epoch.Add(time.Duration(i))
}

// sub is the time from j to i.
func (i instant) sub(j instant) time.Duration { return time.Duration(i - j) }

// schedule is what the scheduler remembers of a zone between checks. Fields are ordered
// to pack: every byte here is 100 kB with 100,000 zones.
type schedule struct {
	applied      uint32
	hasApplied   bool // a check ended since the agent started
	hasPrimary   bool
	expired      bool
	primary      soaTimes // the latest SOA a master gave, if hasPrimary
	lastSuccess  instant
	failures     int // consecutive failed checks
	next         instant
	lastError    *zoneError // the last check that failed, if one did
	lastTransfer *keptSummary
}

// zoneError is the last failure of a zone's check: a pointer in schedule, for most zones
// never fail.
type zoneError struct {
	err string
	at  time.Time
}

// recordLocked records a check's outcome in the zone's status: what the masters serve,
// the transfer made, the serial held, and the failures counted since the last success.
func (m *Manager) recordLocked(z *zone, o outcome) {
	s := &z.sched
	now := m.now()
	if o.primary != nil {
		s.primary, s.hasPrimary = *o.primary, true
	}
	if o.summary != nil {
		s.lastTransfer = keep(o.summary, m.cfg.Masters)
	}
	if !o.gone && !o.unread {
		s.applied, s.hasApplied = o.applied, true
	}
	if o.err != nil {
		s.lastError = &zoneError{o.err.Error(), now}
	}
	switch {
	case o.gone: // deleted, or a CREATE that failed: nothing more to count
	case o.err == nil:
		s.failures, s.expired, s.lastSuccess = 0, false, m.instant(now)
	default:
		s.failures++
		if !s.expired && s.lastSuccess != 0 && m.instant(now).sub(s.lastSuccess) > m.soaTimer(s, soaExpire) {
			// The zone stays served: no backend can withdraw it safely. It is flagged instead.
			s.expired = true
			m.log.Error("zone expired: no successful check within the SOA expire time; still served",
				zap.String("zone", z.name), zap.Time("last_success", m.timeOf(s.lastSuccess)))
		}
	}
}

// armAfterLocked arms the zone's next check after its last recorded one: the refresh
// interval after a success, a retry with exponential backoff after a failure.
func (m *Manager) armAfterLocked(z *zone, o outcome) {
	s := &z.sched
	switch {
	case o.gone:
		// Deleted, or a CREATE that failed: Designate's worker retries the CREATE itself.
		s.next = 0
	case o.err != nil:
		m.armLocked(z, m.retryDelay(s))
	case s.behindLocked():
		// The best master's transfer failed and another master's version, newer than
		// ours but older than the best, was applied: try the best one again soon, not
		// one SOA refresh later.
		m.armLocked(z, m.retryDelay(s))
	default:
		// A quarter of jitter: zones created together (a burst of CREATEs) refresh spread
		// over a quarter of the interval instead of together.
		m.armLocked(z, Jitter(m.refreshInterval(s), 0.25))
	}
}

// behindLocked tells whether a master answered the last check with a serial newer than
// the one applied.
func (s *schedule) behindLocked() bool {
	return s.hasPrimary && s.hasApplied && Newer(s.primary.serial, s.applied)
}

func (m *Manager) refreshInterval(s *schedule) time.Duration {
	if m.cfg.RefreshInterval > 0 {
		return m.cfg.RefreshInterval
	}
	return max(m.soaTimer(s, soaRefresh), minRefresh)
}

// retryDelay doubles from RetryMin with every failure, bounded by the SOA retry value,
// with jitter so zones that failed together do not retry together.
func (m *Manager) retryDelay(s *schedule) time.Duration {
	bound := max(m.soaTimer(s, soaRetry), m.cfg.RetryMin)
	d := m.cfg.RetryMin
	for i := 1; i < s.failures && d < bound; i++ {
		d *= 2
	}
	return Jitter(min(d, bound), 0.25)
}

type soaField int

const (
	soaRefresh soaField = iota
	soaRetry
	soaExpire
)

func (m *Manager) soaTimer(s *schedule, f soaField) time.Duration {
	if !s.hasPrimary {
		return [...]time.Duration{defaultRefresh, defaultRetry, defaultExpire}[f]
	}
	seconds := [...]uint32{s.primary.refresh, s.primary.retry, s.primary.expire}[f]
	return time.Duration(seconds) * time.Second
}

// logFailure says why a check failed and when the next one comes. A check cut short (a
// DELETE, the shutdown) is no failure; one that failed before the shutdown began still
// is, and says so even if the agent stops before this line is written.
func (m *Manager) logFailure(z *zone, o outcome, cutShort bool) {
	if cutShort || errors.Is(o.err, errStopping) {
		m.log.Info("transfer cancelled (zone deleted or agent stopping)", zap.String("zone", z.name))
		return
	}
	m.mu.Lock()
	next, failures := z.sched.next, z.sched.failures
	m.mu.Unlock()
	fields := []zap.Field{zap.String("zone", z.name), zap.Error(o.err)}
	if o.gone { // a CREATE that failed: one line per interval, with the count
		n, due := m.failedCreates.Due(true)
		if !due {
			return
		}
		fields = append(fields, zap.Bool("create", true), zap.Int("failures_since_last_line", n))
	}
	if next != 0 {
		fields = append(fields, zap.Int("failures", failures), zap.Duration("retry_in", next.sub(m.nowInstant()).Round(time.Millisecond)))
	}
	m.log.Warn("zone check failed", fields...)
}

// Status is what the agent can tell about a zone: how fresh it is and, if not, why.
type Status struct {
	Zone          string    `json:"zone"`
	State         string    `json:"state"` // idle, queued, transferring, retrying
	AppliedSerial *uint32   `json:"applied_serial,omitempty"`
	PrimarySerial *uint32   `json:"primary_serial,omitempty"`
	LastSuccess   time.Time `json:"last_success,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	Failures      int       `json:"failures"`
	NextCheck     time.Time `json:"next_check,omitzero"`
	Expired       bool      `json:"expired"`
	LastTransfer  *Summary  `json:"last_transfer,omitempty"`
}

// Status reports on one zone the scheduler knows.
func (m *Manager) Status(name string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	z, ok := m.zones[name]
	if !ok {
		return Status{}, false
	}
	return m.statusLocked(z), true
}

// ZoneStates are the states a zone's status can be in.
var ZoneStates = []string{"idle", "queued", "transferring", "retrying"}

// StatusPage reports on up to limit zones whose name sorts after after, sorted by name,
// only those in state unless it is empty; more tells whether zones beyond the page match.
// It copies the names it sorts, never every zone's status: the page is what costs.
func (m *Manager) StatusPage(state, after string, limit int) (page []Status, more bool) {
	m.mu.Lock()
	names := make([]string, 0, min(len(m.zones), 1024))
	for name, z := range m.zones {
		if name > after && (state == "" || z.stateLocked() == state) {
			names = append(names, name)
		}
	}
	m.mu.Unlock()
	sort.Strings(names)
	if more = len(names) > limit; more {
		names = names[:limit]
	}
	page = make([]Status, 0, len(names))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range names {
		if z, ok := m.zones[name]; ok { // not deleted meanwhile
			page = append(page, m.statusLocked(z))
		}
	}
	return page, more
}

// counts tells how many zones are in each state, how many are expired and how many were
// not checked since the agent started.
func (m *Manager) counts() (states map[string]int, expired, unchecked int) {
	states = make(map[string]int, len(ZoneStates))
	for _, s := range ZoneStates {
		states[s] = 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, z := range m.zones {
		states[z.stateLocked()]++
		if z.sched.expired {
			expired++
		}
		if !z.sched.hasApplied {
			unchecked++
		}
	}
	return states, expired, unchecked
}

func (z *zone) stateLocked() string {
	switch {
	case z.job != nil && z.job.running:
		return "transferring"
	case z.job != nil:
		return "queued"
	case z.sched.failures > 0:
		return "retrying"
	}
	return "idle"
}

func (m *Manager) statusLocked(z *zone) Status {
	s := z.sched
	st := Status{Zone: z.name, State: z.stateLocked(), LastSuccess: m.timeOf(s.lastSuccess), Failures: s.failures, NextCheck: m.timeOf(s.next),
		Expired: s.expired}
	if s.lastError != nil {
		st.LastError, st.LastErrorAt = s.lastError.err, s.lastError.at
	}
	if s.lastTransfer != nil {
		st.LastTransfer = s.lastTransfer.summary(z.name, m.cfg.Masters)
	}
	if s.hasApplied {
		st.AppliedSerial = &s.applied
	}
	if s.hasPrimary {
		st.PrimarySerial = &s.primary.serial
	}
	return st
}

package transfer

import (
	"container/heap"
	"context"
	"net/netip"
	"time"
)

// Two lanes share the transfer workers. NOTIFYs and CREATEs start their job at once; the
// background checks (start-up, refresh, retry) wait in one heap ordered by due time and
// are started by a single dispatcher, at most workers-1 at a time, so a worker is always
// left for a NOTIFY or a CREATE. Every query a background check sends to a master waits
// for that master's pace (max_checks_per_second); a NOTIFY's or a CREATE's query does not
// wait but takes its turn all the same, pushing the background queries back.
//
// One heap entry per armed zone instead of one runtime timer and, once due, one goroutine
// per zone keeps memory flat with 100,000 zones, and bounds the goroutines waiting for
// their turn to the background slots.

// paceMargin widens the spacing of a master's queries a little, so that jitter on the way
// (scheduling, the network) does not let max_checks_per_second+1 queries arrive within one
// second at the master: N+1 queries span N·interval = 1.02 s, 20 ms of slack.
const paceMargin = 1.02

// maxPaceDebt is how far urgent queries may push a master's background queries back: a
// burst of CREATEs delays refreshes by at most this long, it does not starve them.
const maxPaceDebt = time.Second

// pacer spaces the queries sent to one master. Guarded by Manager.mu.
type pacer struct{ next time.Time }

// paceInterval is the spacing of queries to one master; 0 when there is no cap.
func (m *Manager) paceInterval() time.Duration {
	if m.cfg.MaxChecksPerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) * paceMargin / float64(m.cfg.MaxChecksPerSecond))
}

// pacingKey carries how the check running in a context keeps to the masters' pace
// (waitTurn): every request it sends waits its turn alike, its SOA queries, its IXFR, the
// AXFR after a failed IXFR, a transfer asked again after a SERVFAIL.
type pacingKey struct{}

type pacing struct {
	background bool            // waits for its turns; else only counts against the cap
	hurry      <-chan struct{} // closed when an urgent create joins the check (an Ensure's)
}

func withPacing(ctx context.Context, urgent bool, hurry chan struct{}) context.Context {
	return context.WithValue(ctx, pacingKey{}, pacing{background: !urgent, hurry: hurry})
}

// waitTurn waits, for background work (a context withPacing says so), until a query to
// master may go; urgent work (a NOTIFY, a CREATE, an operator's resync) never waits, but
// its query counts against the cap all the same, so the background queries after it wait
// longer. A turn is granted against the clock when
// it is taken, not when it was promised: a waiter that wakes late does not send together
// with the next one.
func (m *Manager) waitTurn(ctx context.Context, master netip.AddrPort) error {
	interval := m.paceInterval()
	if interval == 0 {
		return nil
	}
	pc, _ := ctx.Value(pacingKey{}).(pacing)
	urgent, hurry := !pc.background, pc.hurry
	for {
		select {
		case <-hurry: // an urgent create joined this check
			urgent = true
		default:
		}
		m.mu.Lock()
		p := m.pacers[master]
		if p == nil {
			p = &pacer{}
			m.pacers[master] = p
		}
		now := m.now()
		wait := p.next.Sub(now)
		if urgent || wait <= 0 {
			if p.next.Before(now) {
				p.next = now
			}
			p.next = p.next.Add(interval)
			if limit := now.Add(maxPaceDebt); p.next.After(limit) {
				p.next = limit
			}
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-hurry:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// startupSpread is how long the start-up checks of n zones are spread over: the
// configured spread, or longer when the cap on queries per master could not check them
// all in that time.
func (m *Manager) startupSpread(n int) time.Duration {
	return max(m.cfg.StartupSpread, time.Duration(n)*m.paceInterval())
}

// dueQueue is a min-heap of zones by next check time; zone.slot is its index plus one
// (zero: not queued).
type dueQueue []*zone

func (q dueQueue) Len() int           { return len(q) }
func (q dueQueue) Less(i, j int) bool { return q[i].sched.next < q[j].sched.next }
func (q dueQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].slot, q[j].slot = int32(i+1), int32(j+1)
}
func (q *dueQueue) Push(x any) {
	z := x.(*zone)
	z.slot = int32(len(*q) + 1)
	*q = append(*q, z)
}
func (q *dueQueue) Pop() any {
	old := *q
	z := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	z.slot = 0
	return z
}

// armLocked schedules the zone's next background check in d.
func (m *Manager) armLocked(z *zone, d time.Duration) {
	z.sched.next = m.nowInstant() + instant(d)
	if z.slot > 0 {
		heap.Fix(&m.due, int(z.slot-1))
	} else {
		heap.Push(&m.due, z)
	}
	if z.slot == 1 {
		m.wakeDispatcher()
	}
}

// disarmLocked drops the zone's next background check, if one is armed.
func (m *Manager) disarmLocked(z *zone) {
	if z.slot > 0 {
		heap.Remove(&m.due, int(z.slot-1))
	}
}

func (m *Manager) wakeDispatcher() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// backgroundSlots is how many background checks may run at once: all workers but one.
func (m *Manager) backgroundSlots() int { return max(m.cfg.Workers-1, 1) }

// dispatch starts the background checks as they fall due, as long as a background slot
// is free, until the manager shuts down.
func (m *Manager) dispatch() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.mu.Lock()
		wait := time.Hour // nothing due: sleep until armLocked wakes us
		for m.background < m.backgroundSlots() && len(m.due) > 0 && !m.closed {
			z := m.due[0]
			if d := z.sched.next.sub(m.nowInstant()); d > 0 {
				wait = d
				break
			}
			heap.Pop(&m.due)
			fresh := z.job == nil // else the check folds into the zone's running job
			if j := m.enqueueLocked(z, Notify{}); j != nil && fresh {
				j.background = true
				m.background++
			}
		}
		m.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-m.wake:
		case <-m.draining:
			return
		}
	}
}

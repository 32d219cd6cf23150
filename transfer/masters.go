package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Per-master backoff: a master that failed is asked last among masters with the same
// serial, and a periodic refresh skips it for a while (doubling up to the maximum) as long
// as another master is usable, so one dead primary does not cost every refresh of every
// zone a connect attempt or the answer grace.
const (
	masterBackoffMin = 5 * time.Second
	masterBackoffMax = 5 * time.Minute
	// How long the other masters may still answer their SOA query once one has.
	masterAnswerGrace = 250 * time.Millisecond
)

type masterHealth struct {
	failures int
	retryAt  time.Time
}

// noteMaster records whether talking to a master worked.
func (m *Manager) noteMaster(addr netip.AddrPort, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil || errors.Is(err, context.Canceled) {
		delete(m.masters, addr)
		return
	}
	h := m.masters[addr]
	if h == nil {
		h = &masterHealth{}
		m.masters[addr] = h
	}
	h.failures++
	backoff := masterBackoffMin << min(h.failures-1, 10)
	h.retryAt = m.now().Add(min(backoff, masterBackoffMax))
}

type candidate struct {
	addr      netip.AddrPort
	soa       *dns.SOA
	index     int  // position in the configured masters
	backedOff bool // it failed lately and its backoff has not run out
}

// mastersToAsk lists the masters a check asks for the zone's SOA. With skipBackedOff (a
// periodic refresh) masters backing off are left out as long as one is not; otherwise
// every master is asked and backoff only orders them.
func (m *Manager) mastersToAsk(skipBackedOff bool) []candidate {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var all, healthy []candidate
	for i, addr := range m.cfg.Masters {
		h := m.masters[addr]
		c := candidate{addr: addr, index: i, backedOff: h != nil && now.Before(h.retryAt)}
		all = append(all, c)
		if !c.backedOff {
			healthy = append(healthy, c)
		}
	}
	if skipBackedOff && len(healthy) > 0 {
		return healthy
	}
	return all
}

// soaQuery says what a check wants to know from the masters.
type soaQuery struct {
	hint          Notify // the NOTIFY that asked for the check, if any
	skipBackedOff bool   // a periodic refresh: masters backing off need not be asked
	exists        bool   // the backend holds the zone, at serial held
	held          uint32
}

// candidates returns the masters that answered the zone's SOA query, highest serial (RFC
// 1982) first; among equal serials, those on the NOTIFY sender's address, then those not
// backing off, then in the configured order. Every master to ask is asked at once. Once one has answered,
// the others get a short grace to answer too, so a master that hangs costs one grace
// period, not a timeout, and is then backed off like one that failed. The wait ends
// earlier only when every master on the NOTIFY sender's address has answered and the best
// of them is newer than the zone held (and not older than the serial the NOTIFY carried):
// the transfer can start, and no master that answered is left behind with a newer serial.
func (m *Manager) candidates(ctx context.Context, zoneName string, q soaQuery) ([]candidate, error) {
	masters := m.mastersToAsk(q.skipBackedOff)
	queryCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		candidate
		err error
	}
	answers := make(chan answer, len(masters))
	pending := map[netip.AddrPort]bool{}
	onNotifier := 0 // masters on the notifier's address still to answer
	for _, master := range masters {
		pending[master.addr] = true
		if master.addr.Addr() == q.hint.Source {
			onNotifier++
		}
		go func() {
			soa, err := m.client.SOA(queryCtx, master.addr, zoneName)
			if queryCtx.Err() == nil {
				m.noteMaster(master.addr, err)
			}
			master.soa = soa
			answers <- answer{master, err}
		}()
	}
	var (
		found    []candidate
		errs     []error
		grace    <-chan time.Time
		notified *dns.SOA // the best SOA from the notifier's address
	)
collect:
	for len(pending) > 0 {
		select {
		case a := <-answers:
			delete(pending, a.addr)
			fromNotifier := a.addr.Addr() == q.hint.Source
			if fromNotifier {
				onNotifier--
			}
			if a.err != nil {
				errs = append(errs, a.err)
			} else {
				found = append(found, a.candidate)
				if fromNotifier && (notified == nil || Newer(a.soa.Serial, notified.Serial)) {
					notified = a.soa
				}
				if grace == nil {
					grace = time.After(masterAnswerGrace)
				}
			}
			if onNotifier == 0 && notified != nil && (!q.exists || Newer(notified.Serial, q.held)) &&
				(!q.hint.HasSerial || !Newer(q.hint.Serial, notified.Serial)) {
				break collect
			}
		case <-grace:
			for master := range pending {
				m.noteMaster(master, fmt.Errorf("no SOA answer within %v of another master's", masterAnswerGrace))
			}
			break collect
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("zone %s: no master answered its SOA query: %w", zoneName, errors.Join(errs...))
	}
	slices.SortFunc(found, func(a, b candidate) int {
		switch {
		case Newer(a.soa.Serial, b.soa.Serial):
			return -1
		case Newer(b.soa.Serial, a.soa.Serial):
			return 1
		}
		return cmp.Or(
			cmpBool(a.addr.Addr() == q.hint.Source, b.addr.Addr() == q.hint.Source),
			cmpBool(!a.backedOff, !b.backedOff),
			a.index-b.index)
	})
	return found, nil
}

// cmpBool orders true before false.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

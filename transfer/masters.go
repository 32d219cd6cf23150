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
	// How long the other masters may still answer their SOA query once one has; masters
	// on the NOTIFY sender's address get longer.
	masterAnswerGrace   = 250 * time.Millisecond
	notifierAnswerGrace = 2 * time.Second
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

// candidates returns the masters that answered the zone's SOA query, highest serial (RFC
// 1982) first; among equal serials, those on the NOTIFY sender's address, then those not
// backing off, then in the configured order. Every master to ask is asked at once, and the
// check waits for all of them: taking the first answer, even the notifier's, could miss a
// newer serial, or leave out the master to fall back to. Once one has answered, the others
// get a short grace, so a master that hangs costs one grace period, not a timeout, and is
// then backed off like one that failed; masters on the NOTIFY sender's address get a
// longer grace, as their NOTIFY announced a version the others may not have yet.
func (m *Manager) candidates(ctx context.Context, zoneName string, notifier netip.Addr, skipBackedOff bool) ([]candidate, error) {
	masters := m.mastersToAsk(skipBackedOff)
	// Every master's turn comes before any query goes out, so no master's answer grace
	// starts while another still waits for its turn.
	for _, master := range masters {
		if err := m.waitTurn(ctx, master.addr); err != nil {
			return nil, err
		}
	}
	queryCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		candidate
		err error
	}
	answers := make(chan answer, len(masters))
	pending := map[netip.AddrPort]bool{}
	for _, master := range masters {
		pending[master.addr] = true
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
		found []candidate
		errs  []error
		// Both start at the first answer: the NOTIFY's sender said it has a new version,
		// so its masters may answer later than the others, though not forever (a dead
		// one there must not cost every NOTIFY a whole SOA timeout).
		grace, notifierGrace <-chan time.Time
	)
	giveUp := func(all bool, after time.Duration) {
		for master := range pending {
			if all || master.Addr() != notifier {
				m.noteMaster(master, fmt.Errorf("no SOA answer within %v of another master's", after))
				delete(pending, master)
			}
		}
	}
	for len(pending) > 0 {
		select {
		case a := <-answers:
			if !pending[a.addr] {
				continue // given up on already
			}
			delete(pending, a.addr)
			if a.err != nil {
				errs = append(errs, a.err)
				continue
			}
			found = append(found, a.candidate)
			if notifierGrace == nil {
				grace, notifierGrace = time.After(masterAnswerGrace), time.After(notifierAnswerGrace)
			}
		case <-grace:
			giveUp(false, masterAnswerGrace)
		case <-notifierGrace:
			giveUp(true, notifierAnswerGrace)
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
			cmpBool(a.addr.Addr() == notifier, b.addr.Addr() == notifier),
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

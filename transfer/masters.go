package transfer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Per-master backoff: a master that failed is skipped for a while (doubling up to the
// maximum) as long as another master is usable, so one dead primary does not cost every
// check a connect timeout.
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

// usableMasters lists the masters not backing off, or all of them if every one is.
func (m *Manager) usableMasters() []netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var usable []netip.AddrPort
	for _, addr := range m.cfg.Masters {
		if h := m.masters[addr]; h == nil || !now.Before(h.retryAt) {
			usable = append(usable, addr)
		}
	}
	if len(usable) == 0 {
		return slices.Clone(m.cfg.Masters)
	}
	return usable
}

type candidate struct {
	addr netip.AddrPort
	soa  *dns.SOA
}

// candidates returns the masters to transfer from, best first. Every usable master is
// asked for the zone's SOA at once. The NOTIFY's sender, if it is a master, wins as soon as
// it answers; otherwise, once one master has answered, the others get a short grace to
// answer too and the highest serial (RFC 1982) comes first. So a master that hangs costs
// one grace period, not a timeout, and is then backed off like one that failed.
func (m *Manager) candidates(ctx context.Context, zoneName string, notifier netip.Addr) ([]candidate, error) {
	masters := m.usableMasters()
	queryCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		candidate
		err error
	}
	answers := make(chan answer, len(masters))
	pending := map[netip.AddrPort]bool{}
	for _, master := range masters {
		pending[master] = true
		go func() {
			soa, err := m.client.SOA(queryCtx, master, zoneName)
			if queryCtx.Err() == nil {
				m.noteMaster(master, err)
			}
			answers <- answer{candidate{master, soa}, err}
		}()
	}
	var (
		found []candidate
		errs  []error
		grace <-chan time.Time
	)
collect:
	for len(pending) > 0 {
		select {
		case a := <-answers:
			delete(pending, a.addr)
			if a.err != nil {
				errs = append(errs, a.err)
				continue
			}
			if a.addr.Addr() == notifier {
				return append([]candidate{a.candidate}, found...), nil
			}
			found = append(found, a.candidate)
			if grace == nil {
				grace = time.After(masterAnswerGrace)
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
	slices.SortStableFunc(found, func(a, b candidate) int {
		switch {
		case Newer(a.soa.Serial, b.soa.Serial):
			return -1
		case Newer(b.soa.Serial, a.soa.Serial):
			return 1
		}
		return 0
	})
	return found, nil
}

package memory

import (
	"context"
	"fmt"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/miekg/dns"
)

var _ backend.Incremental = (*Backend)(nil)

// Apply implements backend.Incremental: the patched copy is swapped in only if the whole
// change set fits.
func (b *Backend) Apply(_ context.Context, zone string, cs *backend.ChangeSet) error {
	zone, err := b.begin("apply", zone)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	stored, ok := b.zones[zone]
	if !ok {
		return fmt.Errorf("memory backend: apply %s: %w", zone, backend.ErrNotFound)
	}
	p := cs.Patcher()
	if err := p.Start(stored[0].(*dns.SOA)); err != nil {
		return fmt.Errorf("memory backend: apply %s: %w", zone, err)
	}
	patched := []dns.RR{dns.Copy(p.SOA())}
	for _, rr := range stored[1:] {
		if p.Keep(rr) {
			patched = append(patched, rr)
		}
	}
	if err := p.Err(); err != nil {
		return fmt.Errorf("memory backend: apply %s: %w", zone, err)
	}
	added, err := p.Added()
	if err != nil {
		return fmt.Errorf("memory backend: apply %s: %w", zone, err)
	}
	b.zones[zone] = append(patched, copyRecords(added)...)
	return nil
}

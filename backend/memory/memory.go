// Package memory owns an in-memory backend: the catalog consumer holds the catalog zones
// in one, backend_driver = memory configures one (zones lost at exit), and tests of the
// layers above the backends use it. It keeps the promises of every backend: names are
// validated, streams are checked, and a zone is swapped in only when its stream is
// complete. Faults are injected by wrapping it (backendtest.Faulty), not in it.
package memory

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

var _ backend.Backend = (*Backend)(nil)

// Backend holds zones in a map. The zero value is not usable; call New.
type Backend struct {
	mu    sync.Mutex
	zones map[string][]dns.RR
}

// New returns an empty backend.
func New() *Backend {
	return &Backend{zones: map[string][]dns.RR{}}
}

// Records returns a copy of the zone's records, SOA first, and whether the zone exists.
func (b *Backend) Records(zone string) ([]dns.RR, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rrs, ok := b.zones[backend.CanonicalZone(zone)]
	if !ok {
		return nil, false
	}
	return copyRecords(rrs), true
}

// Serial implements backend.Backend.
func (b *Backend) Serial(_ context.Context, zone string) (uint32, error) {
	zone, err := b.begin("serial", zone)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rrs, ok := b.zones[zone]
	if !ok {
		return 0, fmt.Errorf("memory backend: serial %s: %w", zone, backend.ErrNotFound)
	}
	return rrs[0].(*dns.SOA).Serial, nil
}

// Create implements backend.Backend.
func (b *Backend) Create(ctx context.Context, zone string, src backend.Source) error {
	zone, err := b.begin("create", zone)
	if err != nil {
		return err
	}
	if b.exists(zone) {
		return fmt.Errorf("memory backend: create %s: zone already exists", zone)
	}
	rrs, err := collect(ctx, zone, src)
	if err != nil {
		return fmt.Errorf("memory backend: create %s: %w", zone, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.zones[zone] = rrs
	return nil
}

// Replace implements backend.Backend.
func (b *Backend) Replace(ctx context.Context, zone string, src backend.Source) error {
	zone, err := b.begin("replace", zone)
	if err != nil {
		return err
	}
	if !b.exists(zone) {
		return fmt.Errorf("memory backend: replace %s: %w", zone, backend.ErrNotFound)
	}
	rrs, err := collect(ctx, zone, src)
	if err != nil {
		return fmt.Errorf("memory backend: replace %s: %w", zone, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.zones[zone] = rrs
	return nil
}

// Delete implements backend.Backend.
func (b *Backend) Delete(_ context.Context, zone string) error {
	zone, err := b.begin("delete", zone)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.zones[zone]; !ok {
		return fmt.Errorf("memory backend: delete %s: %w", zone, backend.ErrNotFound)
	}
	delete(b.zones, zone)
	return nil
}

// Zones implements backend.Backend; the names are sorted.
func (b *Backend) Zones(context.Context) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.zones))
	for name := range b.zones {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// begin validates the name and returns the canonical name.
func (b *Backend) begin(op, zone string) (string, error) {
	return backend.CheckZone("memory", op, zone)
}

func (b *Backend) exists(zone string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.zones[zone]
	return ok
}

// collect reads the whole stream aside, without holding the lock, so a slow transfer of
// one zone does not block the others.
func collect(ctx context.Context, zone string, src backend.Source) ([]dns.RR, error) {
	var rrs []dns.RR
	_, err := backend.StreamCheck{Zone: zone}.Read(ctx, src, func(batch []dns.RR) error {
		rrs = append(rrs, copyRecords(batch)...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rrs, nil
}

func copyRecords(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

var _ backend.Reader = (*Backend)(nil)

// Read implements backend.Reader.
func (b *Backend) Read(ctx context.Context, zone string, each func([]dns.RR) error) error {
	if _, err := b.begin("read", zone); err != nil {
		return err
	}
	rrs, ok := b.Records(zone)
	if !ok {
		return fmt.Errorf("memory backend: read %s: %w", zone, backend.ErrNotFound)
	}
	return each(rrs)
}

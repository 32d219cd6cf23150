package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/miekg/dns"
)

var _ backend.Incremental = (*Backend)(nil)

// patchBatch is how many kept records go to the writer at a time.
const patchBatch = 1000

// Apply implements backend.Incremental. The stored file is streamed through the change
// set into a new temp file, renamed into place only if every deletion found its record:
// the zone is never held in memory, and a change set that does not fit changes nothing.
func (b *Backend) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	zone, err := canonical("apply", zone)
	if err != nil {
		return err
	}
	path := b.dir.Path(zone)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: apply %s: %w", zone, backend.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("file backend: apply %s: %w", zone, err)
	}
	defer f.Close()
	src := &patchSource{parser: dns.NewZoneParser(f, zone, path), patcher: cs.Patcher(), zone: zone}
	if err := b.write(ctx, zone, src); err != nil {
		return fmt.Errorf("file backend: apply %s: %w", zone, err)
	}
	if err := b.run(ctx, b.reloadCommand, zone, path); err != nil {
		return fmt.Errorf("file backend: apply %s: reload: %w (new zone file kept)", zone, err)
	}
	return nil
}

// patchSource yields the patched zone: the new SOA, the stored records the change set
// keeps, then the records it adds; it fails instead of ending if the change set does
// not fit the stored zone.
type patchSource struct {
	parser  *dns.ZoneParser
	patcher *backend.Patcher
	zone    string
	started bool
	done    bool
}

func (s *patchSource) Next() ([]dns.RR, error) {
	if s.done {
		return nil, io.EOF
	}
	if !s.started {
		s.started = true
		rr, ok := s.parser.Next()
		soa, isSOA := rr.(*dns.SOA)
		if !ok || !isSOA || !strings.EqualFold(soa.Hdr.Name, s.zone) {
			return nil, fmt.Errorf("stored zone does not start with its SOA: %v", s.parser.Err())
		}
		if err := s.patcher.Start(soa); err != nil {
			return nil, err
		}
		return []dns.RR{s.patcher.SOA()}, nil
	}
	var batch []dns.RR
	for len(batch) < patchBatch {
		rr, ok := s.parser.Next()
		if !ok {
			if err := s.parser.Err(); err != nil {
				return nil, fmt.Errorf("reading the stored zone: %w", err)
			}
			if err := s.patcher.Err(); err != nil {
				return nil, err
			}
			s.done = true
			return append(batch, s.patcher.Added()...), nil
		}
		if s.patcher.Keep(rr) {
			batch = append(batch, rr)
		}
	}
	return batch, nil
}

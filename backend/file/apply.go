package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonefile"
)

var _ backend.Incremental = (*Backend)(nil)

// maxLine bounds a zone-file line: the largest record (64 KiB of data) fully escaped.
const maxLine = 1 << 20

// Apply implements backend.Incremental. The stored file is streamed line by line through
// the change set into a new temp file, renamed into place only if every deletion found
// its record: the zone is never held in memory, and a change set that does not fit
// changes nothing. The lines are the agent's own (one record each, as Line writes them),
// so records are matched by their text without being parsed; a file in another shape is
// reported inconsistent, and the engine then rewrites it from a full transfer.
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
	tmp, err := b.dir.WriteTemp(zone, func(w *bufio.Writer) error {
		return patch(ctx, f, zone, cs.Patcher(), w)
	})
	if err == nil {
		err = b.dir.Install(tmp, zone)
	}
	if err != nil {
		return fmt.Errorf("file backend: apply %s: %w", zone, err)
	}
	if err := b.run(ctx, b.reloadCommand, zone, path); err != nil {
		return fmt.Errorf("file backend: apply %s: reload: %w (new zone file kept)", zone, err)
	}
	return nil
}

// patch writes the patched zone: the new SOA, the stored lines the change set keeps, then
// the records it adds.
func patch(ctx context.Context, stored io.Reader, zone string, p *backend.Patcher, w *bufio.Writer) error {
	sc := bufio.NewScanner(stored)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	started := false
	for n := 0; sc.Scan(); n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line := sc.Text()
		if line == "" || line[0] == ';' {
			continue
		}
		if !started {
			if err := startPatch(line, zone, p); err != nil {
				return err
			}
			started = true
			if _, err := w.WriteString(zonefile.Line(p.SOA()) + "\n"); err != nil {
				return err
			}
			continue
		}
		key, ok := zonefile.LineKey(line)
		if !ok {
			return fmt.Errorf("%w: stored line %d is not one record as the agent writes it", backend.ErrInconsistent, n+1)
		}
		if p.KeepKey(key) {
			w.WriteString(line) //nolint:errcheck // a bufio.Writer keeps its first error for Flush
			w.WriteByte('\n')   //nolint:errcheck // as above
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the stored zone: %w", err)
	}
	if !started {
		return fmt.Errorf("%w: the stored zone has no records", backend.ErrInconsistent)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return p.EachAdded(func(rr dns.RR) error { return zonefile.WriteRecords(w, []dns.RR{rr}) })
}

// startPatch checks the stored SOA line against the change set.
func startPatch(line, zone string, p *backend.Patcher) error {
	rr, err := dns.NewRR(line)
	soa, isSOA := rr.(*dns.SOA)
	if err != nil || !isSOA || !strings.EqualFold(soa.Hdr.Name, zone) {
		return fmt.Errorf("%w: the stored zone does not start with its SOA", backend.ErrInconsistent)
	}
	return p.Start(soa)
}

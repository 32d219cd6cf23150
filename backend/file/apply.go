package file

import (
	"bufio"
	"bytes"
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
	if err := b.runOrMark(ctx, zone, reloadFailed, b.reloadCommand); err != nil {
		return fmt.Errorf("file backend: apply %s: reload: %w (new zone file kept; the reload is run again at the next check)", zone, err)
	}
	return nil
}

// patch writes the patched zone: the new SOA, the stored lines the change set keeps, then
// the records it adds. A stored line is copied as it is unless the change set touches its
// owner (Patcher.Touches): only those few lines have their key computed, so a 10-record
// change costs a big zone little more than a copy.
func patch(ctx context.Context, stored io.Reader, zone string, p *backend.Patcher, w *bufio.Writer) error {
	in := lineReader{r: bufio.NewReaderSize(stored, 256<<10)}
	started := false
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw, err := in.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the stored zone: %w", err)
		}
		line := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
		if len(line) == 0 || line[0] == ';' {
			continue
		}
		if !started {
			if err := startPatch(string(line), zone, p); err != nil {
				return err
			}
			started = true
			if _, err := w.WriteString(zonefile.Line(p.SOA()) + "\n"); err != nil {
				return err
			}
			continue
		}
		// The shape KeyOfLine requires: a non-empty owner and at least five fields.
		tab := bytes.IndexByte(line, '\t')
		if tab <= 0 || bytes.Count(line[tab+1:], []byte("\t")) < 3 {
			return fmt.Errorf("%w: stored line %d is not one record as the agent writes it", backend.ErrInconsistent, n+1)
		}
		if p.Touches(line[:tab]) && !p.KeepLine(line) {
			continue
		}
		w.Write(line)     //nolint:errcheck // a bufio.Writer keeps its first error for Flush
		w.WriteByte('\n') //nolint:errcheck // as above
	}
	if !started {
		return fmt.Errorf("%w: the stored zone has no records", backend.ErrInconsistent)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return p.EachAddedLine(func(line []byte) error {
		w.Write(line)            //nolint:errcheck // a bufio.Writer keeps its first error for Flush
		return w.WriteByte('\n') // as above
	})
}

// lineReader reads lines without allocating for each: a line is valid until the next call.
type lineReader struct {
	r    *bufio.Reader
	long []byte // a line longer than r's buffer, gathered
}

// next returns the next line with its newline, if it has one; io.EOF once none is left.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		l.long = append(l.long[:0], line...)
		for err == bufio.ErrBufferFull && len(l.long) <= maxLine {
			line, err = l.r.ReadSlice('\n')
			l.long = append(l.long, line...)
		}
		if len(l.long) > maxLine {
			return nil, bufio.ErrTooLong
		}
		line = l.long
	}
	if err == io.EOF && len(line) > 0 {
		err = nil // the last line, without a newline
	}
	return line, err
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

package bind9

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonefile"
)

// journalSuffix ends named's journal of a zone file: <file>.jnl.
const journalSuffix = ".jnl"

// writeTemp streams src into a new temp file beside the zone file and returns its path and
// the zone's SOA. The file is complete, on disk and readable by named; the caller renames
// it into place. On error nothing is left behind. The copy of the SOA that closes an AXFR
// is dropped, should the source pass it on.
func (b *Backend) writeTemp(ctx context.Context, zone string, src backend.Source) (string, *dns.SOA, error) {
	return b.dir.WriteStream(ctx, backend.StreamCheck{Zone: zone, DropClosingSOA: true}, src)
}

// patchTemp writes a temp file holding the zone file with the change set applied, reading
// the current file record by record. It returns ErrInconsistent (wrapped) when the change
// set does not start at the file's serial or deletes a record the file does not hold.
func (b *Backend) patchTemp(ctx context.Context, zone string, cs *backend.ChangeSet) (string, error) {
	in, err := os.Open(b.dir.Path(zone))
	if err != nil {
		return "", err
	}
	defer in.Close()
	return b.dir.WriteTemp(zone, func(w *bufio.Writer) error {
		return patchRecords(ctx, w, in, zone, cs.Patcher())
	})
}

func patchRecords(ctx context.Context, w *bufio.Writer, in *os.File, zone string, p *backend.Patcher) error {
	zp := dns.NewZoneParser(bufio.NewReaderSize(in, 64<<10), zone, in.Name())
	zp.SetIncludeAllowed(false)
	rr, ok := zp.Next()
	soa, isSOA := rr.(*dns.SOA)
	if !ok || !isSOA {
		return fmt.Errorf("%s does not start with the zone's SOA (%v)", in.Name(), zp.Err())
	}
	if err := p.Start(soa); err != nil {
		return err
	}
	w.WriteString(zonefile.Line(p.SOA()))
	w.WriteByte('\n')
	for n := 0; ; n++ {
		rr, ok := zp.Next()
		if !ok {
			break
		}
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if _, isSOA := rr.(*dns.SOA); isSOA || !p.Keep(rr) {
			continue
		}
		w.WriteString(zonefile.Line(rr))
		w.WriteByte('\n')
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", in.Name(), err)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return p.EachAddedLine(func(line []byte) error {
		w.Write(line)            //nolint:errcheck // a bufio.Writer keeps its first error for Flush
		return w.WriteByte('\n') // as above
	})
}

// install renames a finished temp file over the zone's file; on error the temp file is
// removed. The mtime is set to now first: named skips a reload when the file is not newer
// than its last load, and a temp file written before a load finished would otherwise look
// old.
func (b *Backend) install(tmp, zone string) error {
	now := time.Now()
	if err := os.Chtimes(tmp, now, now); err != nil {
		os.Remove(tmp)
		return err
	}
	return b.dir.Install(tmp, zone)
}

// removeFiles deletes every file the agent or named keeps for the zone in the directory:
// the zone file and its journal (temp files a crash left are swept at start-up: listing
// the directory here would cost each DELETE the whole directory). It reports whether the
// zone file was there.
func (b *Backend) removeFiles(zone string) (bool, error) {
	path := b.dir.Path(zone)
	existed := true
	if err := os.Remove(path); errors.Is(err, fs.ErrNotExist) {
		existed = false
	} else if err != nil {
		return false, err
	}
	if err := os.Remove(path + journalSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return existed, err
	}
	return existed, b.dir.Sync()
}

package bind9

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

const (
	zoneSuffix    = ".zone"
	journalSuffix = ".jnl" // named's journal: <file>.jnl
)

// path is where the zone's file lives: <zone_file_path>/<zone>.zone, like the file backend.
func (b *Backend) path(zone string) string {
	return filepath.Join(b.dir, strings.TrimSuffix(zone, ".")+zoneSuffix)
}

// tempPrefix starts the names of a zone's temp files: hidden, not ending in .zone, and
// '~' cannot occur in a zone name, so one zone's prefix never matches another's files.
func tempPrefix(zone string) string {
	return "." + strings.TrimSuffix(zone, ".") + zoneSuffix + "~"
}

// writeTemp streams src into a new temp file beside the zone file and returns its path and
// the zone's SOA. The file is complete, on disk and readable by named; the caller renames
// it into place. On error nothing is left behind. The zone never sits in memory: records
// go to the file batch by batch.
func (b *Backend) writeTemp(ctx context.Context, zone string, src backend.Source) (string, *dns.SOA, error) {
	f, err := os.CreateTemp(b.dir, tempPrefix(zone)+"*")
	if err != nil {
		return "", nil, err
	}
	check := recordCheck{zone: zone}
	err = writeRecords(ctx, f, zone, &check, src)
	if err == nil {
		err = b.finish(f)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", nil, err
	}
	return f.Name(), check.soa, nil
}

func writeRecords(ctx context.Context, f *os.File, zone string, check *recordCheck, src backend.Source) error {
	w := bufio.NewWriterSize(f, 64<<10)
	fmt.Fprintf(w, "; %s mirrored by dnsagent\n", zone)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := src.Next()
		// Only io.EOF itself ends a stream: a wrapped EOF is a connection that broke.
		if err != nil && err != io.EOF {
			return fmt.Errorf("transfer failed: %w", err)
		}
		batch, checkErr := check.filter(batch)
		if checkErr != nil {
			return checkErr
		}
		for _, rr := range batch {
			w.WriteString(rr.String())
			if werr := w.WriteByte('\n'); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
	}
	if check.soa == nil {
		return fmt.Errorf("empty stream: no SOA for %s", zone)
	}
	return w.Flush()
}

// patchTemp writes a temp file holding the zone file with the change set applied, reading
// the current file record by record. It returns ErrInconsistent (wrapped) when the change
// set does not start at the file's serial or deletes a record the file does not hold.
func (b *Backend) patchTemp(ctx context.Context, zone string, cs *backend.ChangeSet) (string, error) {
	in, err := os.Open(b.path(zone))
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(b.dir, tempPrefix(zone)+"*")
	if err != nil {
		return "", err
	}
	err = patchRecords(ctx, out, in, zone, cs.Patcher())
	if err == nil {
		err = b.finish(out)
	}
	if err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

func patchRecords(ctx context.Context, out *os.File, in *os.File, zone string, p *backend.Patcher) error {
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
	w := bufio.NewWriterSize(out, 64<<10)
	fmt.Fprintf(w, "; %s mirrored by dnsagent\n%s\n", zone, p.SOA())
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
		w.WriteString(rr.String())
		w.WriteByte('\n')
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", in.Name(), err)
	}
	if err := p.Err(); err != nil {
		return err
	}
	for _, rr := range p.Added() {
		w.WriteString(rr.String())
		w.WriteByte('\n')
	}
	return w.Flush()
}

// finish gives a temp file its mode and group and puts it on disk. Mode and group come
// before the rename: named must never see a file it cannot read (os.CreateTemp makes 0600).
func (b *Backend) finish(f *os.File) error {
	if err := f.Chmod(b.cfg.FileMode); err != nil {
		return err
	}
	if b.gid >= 0 {
		if err := f.Chown(-1, b.gid); err != nil {
			return fmt.Errorf("setting group %d: %w", b.gid, err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// install renames a finished temp file over path. The mtime is set to now first: named
// skips a reload when the file is not newer than its last load, and a temp file written
// before a load finished would otherwise look old.
func (b *Backend) install(tmp, path string) error {
	now := time.Now()
	if err := os.Chtimes(tmp, now, now); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(b.dir)
}

// readSerial returns the serial of the SOA that starts the zone file, reading nothing more.
func readSerial(path, zone string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, zone, path)
	zp.SetIncludeAllowed(false)
	rr, _ := zp.Next()
	soa, ok := rr.(*dns.SOA)
	if !ok {
		return 0, fmt.Errorf("%s does not start with the zone's SOA (%v)", path, zp.Err())
	}
	return soa.Serial, nil
}

// removeFiles deletes every file the agent or named keeps for the zone in the directory:
// the zone file, its journal, and temp files a crash left. It reports whether the zone
// file was there.
func (b *Backend) removeFiles(zone string) (bool, error) {
	path := b.path(zone)
	existed := true
	if err := os.Remove(path); errors.Is(err, fs.ErrNotExist) {
		existed = false
	} else if err != nil {
		return false, err
	}
	if err := os.Remove(path + journalSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return existed, err
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return existed, err
	}
	prefix := tempPrefix(zone)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(b.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return existed, err
			}
		}
	}
	return existed, syncDir(b.dir)
}

// syncDir makes a rename or removal in dir survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func checkWritable(dir string) error {
	// The name does not end in .zone, so Zones never lists it even after a crash.
	f, err := os.CreateTemp(dir, ".dnsagent-write-test-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// recordCheck enforces what a stream must look like, batch by batch: the zone's own SOA
// first and every owner inside the zone, so a confused or hostile primary cannot make
// named serve names it has no authority over.
type recordCheck struct {
	zone string
	soa  *dns.SOA
}

// filter checks one batch and drops the copy of the SOA that closes an AXFR, if the source
// passed it on; a different SOA later in the stream is an error.
func (c *recordCheck) filter(rrs []dns.RR) ([]dns.RR, error) {
	kept := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		owner := rr.Header().Name
		if c.soa == nil {
			soa, ok := rr.(*dns.SOA)
			if !ok || !strings.EqualFold(owner, c.zone) {
				return nil, fmt.Errorf("stream does not start with the SOA of %s (first record: %s)", c.zone, rr)
			}
			c.soa = soa
			kept = append(kept, rr)
			continue
		}
		if !dns.IsSubDomain(c.zone, owner) {
			return nil, fmt.Errorf("record %s is outside zone %s", rr, c.zone)
		}
		if soa, ok := rr.(*dns.SOA); ok {
			if !dns.IsDuplicate(soa, c.soa) {
				return nil, fmt.Errorf("second, different SOA in the stream: %s", rr)
			}
			continue
		}
		kept = append(kept, rr)
	}
	return kept, nil
}

// Package zonefile owns the directory of master files that the file and bind9 backends
// write: one <zone>.zone file per zone (a shortened name for very long zones, see
// fileBase) with absolute names, only ever replaced by renaming a
// complete temp file over it, with the mode and group the DNS server needs to read it, and
// made durable (file and directory fsync) before the backend reports success.
package zonefile

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

const suffix = ".zone"

// Dir is a directory of zone files. It holds no per-zone state: the caller serialises
// operations on one zone, and different zones touch different files.
type Dir struct {
	path string // absolute, so a zone file's path is absolute too
	mode os.FileMode
	gid  int // -1: keep the agent's group
	sync groupSync
}

// Open resolves group (LookupGroup), creates the directory if needed and checks that it
// is writable, so a bad setup fails at start rather than at the first transfer. Zone
// files get mode and group. Errors name the option at fault (zone_file_path, file_group).
func Open(path string, mode os.FileMode, group string) (*Dir, error) {
	gid, err := LookupGroup(group)
	if err != nil {
		return nil, fmt.Errorf("file_group: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("zone_file_path %s: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("zone_file_path: %w", err)
	}
	if err := checkWritable(abs); err != nil {
		return nil, fmt.Errorf("zone_file_path %s is not writable: %w", abs, err)
	}
	d := &Dir{path: abs, mode: mode, gid: gid}
	d.sync.cond.L = &d.sync.mu
	return d, nil
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

// LookupGroup resolves a group name or numeric gid; -1 (leave the group alone) when empty.
func LookupGroup(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(group); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("%q is not a valid gid", group)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("unknown group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// Path is where the zone's file lives: <dir>/<fileBase>.zone.
func (d *Dir) Path(zone string) string {
	return filepath.Join(d.path, fileBase(zone)+suffix)
}

// maxPlainName is the longest zone name (final dot left out) whose files are named after
// it in full: its temp file ".<name>.zone~<up to 10 digits>" (os.CreateTemp) must fit in
// the 255 bytes a file name may have (NAME_MAX).
const maxPlainName = 255 - len(".") - len(suffix) - len("~") - 10

// hashedPrefix is how much of a longer name its files keep before the hash.
const hashedPrefix = 200

// fileBase is the zone's file name without ".zone": the zone name without its final dot,
// or for a name longer than maxPlainName (up to 253 characters are valid) its first
// hashedPrefix characters, '~' and 16 hex digits of its SHA-256. '~' never occurs in a
// zone name, so a shortened name cannot be another zone's full one; every file of the zone
// (".jnl" journal, temp files) then stays well under the limit. The file itself names the
// zone: Zones reads it from the SOA.
func fileBase(zone string) string {
	name := strings.TrimSuffix(zone, ".")
	if len(name) <= maxPlainName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:hashedPrefix] + "~" + hex.EncodeToString(sum[:8])
}

// Contains reports whether file is an absolute path below the directory.
func (d *Dir) Contains(file string) bool {
	return filepath.IsAbs(file) && strings.HasPrefix(filepath.Clean(file), d.path+string(filepath.Separator))
}

// tempPrefix starts the names of a zone's temp files. They are hidden, do not end in
// .zone, and '~' cannot occur in a zone name, so one zone's prefix never matches another
// zone's temp files.
func tempPrefix(zone string) string {
	return "." + fileBase(zone) + suffix + "~"
}

// Zones lists the zones that have a file, sorted. Temp files and files whose name is not a
// canonical zone name were not written by the agent and are ignored.
func (d *Dir) Zones() ([]string, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, err
	}
	var zones []string
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		zone := base + "."
		if strings.Contains(base, "~") {
			// A shortened name: the zone is the owner of the file's SOA.
			if zone, ok = d.owner(filepath.Join(d.path, e.Name())); !ok || fileBase(zone) != base {
				continue
			}
		}
		if backend.ValidateZoneName(zone) != nil || zone != backend.CanonicalZone(zone) {
			continue
		}
		zones = append(zones, zone)
	}
	sort.Strings(zones)
	return zones, nil
}

// owner reads the name of the SOA at the top of a zone file, lowercase.
func (d *Dir) owner(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	rr, ok := dns.NewZoneParser(f, ".", path).Next()
	if !ok || rr.Header().Rrtype != dns.TypeSOA {
		return "", false
	}
	return backend.CanonicalZone(rr.Header().Name), true
}

// Serial reads the SOA at the top of the zone's file, and nothing else of it. A missing
// file is an error that matches fs.ErrNotExist.
func (d *Dir) Serial(zone string) (uint32, error) {
	path := d.Path(zone)
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, zone, path)
	rr, ok := zp.Next()
	if !ok {
		if err := zp.Err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%s has no records", path)
	}
	soa, isSOA := rr.(*dns.SOA)
	if !isSOA || !strings.EqualFold(soa.Hdr.Name, zone) {
		return 0, fmt.Errorf("%s does not start with the zone's SOA", path)
	}
	return soa.Serial, nil
}

// WriteStream writes the stream, checked by check, to a new temp file for check.Zone
// (WriteTemp) and returns the file's path and the zone's SOA. The zone never sits in
// memory: records go to the file batch by batch.
func (d *Dir) WriteStream(ctx context.Context, check backend.StreamCheck, src backend.Source) (string, *dns.SOA, error) {
	return d.WriteStreamThen(ctx, check, src, nil)
}

// WriteStreamThen is WriteStream calling written, when set, once the stream is in the temp
// file and before the file's fsync: what remains is waiting for the disk.
func (d *Dir) WriteStreamThen(ctx context.Context, check backend.StreamCheck, src backend.Source, written func()) (string, *dns.SOA, error) {
	var soa *dns.SOA
	tmp, err := d.writeTemp(check.Zone, func(w *bufio.Writer) error {
		var err error
		soa, err = check.Read(ctx, src, func(batch []dns.RR) error { return WriteRecords(w, batch) })
		return err
	}, written)
	if err != nil {
		return "", nil, err
	}
	return tmp, soa, nil
}

// Write replaces the zone's file with the checked stream: WriteStream, then Install. A
// stream that fails leaves the zone's file untouched, and no temp file is left behind.
func (d *Dir) Write(ctx context.Context, check backend.StreamCheck, src backend.Source) error {
	tmp, _, err := d.WriteStream(ctx, check, src)
	if err != nil {
		return err
	}
	return d.Install(tmp, check.Zone)
}

// fileWriters buffer the zone files being written.
var fileWriters = backend.WriterPool{Size: 64 << 10}

// WriteTemp writes a zone file aside, in a temp file beside the zone's file: a comment
// line, then what write writes. The file is complete, on disk, and readable by the DNS
// server when WriteTemp returns its path; on error nothing is left behind.
func (d *Dir) WriteTemp(zone string, write func(*bufio.Writer) error) (_ string, err error) {
	return d.writeTemp(zone, write, nil)
}

// writeTemp is WriteTemp calling written, when set, just before the fsync.
func (d *Dir) writeTemp(zone string, write func(*bufio.Writer) error, written func()) (_ string, err error) {
	f, err := os.CreateTemp(d.path, tempPrefix(zone)+"*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := fileWriters.Get(f)
	defer fileWriters.Put(w)
	if _, err := fmt.Fprintf(w, "; %s mirrored by dnsagent\n", zone); err != nil {
		return "", err
	}
	if err := write(w); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	// Mode and group before the rename: the server must never see a file it cannot read
	// (os.CreateTemp makes 0600 files).
	if err := f.Chmod(d.mode); err != nil {
		return "", err
	}
	if d.gid >= 0 {
		if err := f.Chown(-1, d.gid); err != nil {
			return "", fmt.Errorf("setting group %d: %w", d.gid, err)
		}
	}
	if written != nil {
		written()
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// WriteRecords writes records one a line, in master file format with absolute names.
func WriteRecords(w *bufio.Writer, rrs []dns.RR) error {
	for _, rr := range rrs {
		// Formatted in w's free space: no copy and, for the common types, no allocation.
		line := append(backend.AppendPresentation(w.AvailableBuffer(), rr), '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

// LineKey returns backend.Key of the record a line written by Line holds, without parsing
// it (backend.KeyOfLine). ok is false for a line of another shape: a file someone else wrote.
func LineKey(line string) (key string, ok bool) {
	return backend.KeyOfLine(line)
}

// Line is rr as a master-file line that BIND, Knot and NSD all load (backend.Presentation).
// An owner name starting with '$' comes out escaped: at the start of a line "$INCLUDE" or
// "$ORIGIN" is a directive (RFC 1035 §5.1), and a primary could otherwise make the DNS
// server read any file into the zone.
func Line(rr dns.RR) string {
	return backend.Presentation(rr)
}

// Install renames a temp file from WriteTemp over the zone's file and makes the rename
// durable. If the rename fails the temp file is removed.
func (d *Dir) Install(tmp, zone string) error {
	if err := d.Rename(tmp, zone); err != nil {
		return err
	}
	return d.Sync()
}

// Rename is Install without the Sync: the caller makes the rename durable.
func (d *Dir) Rename(tmp, zone string) error {
	if err := os.Rename(tmp, d.Path(zone)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Remove deletes the zone's file and makes the removal durable. A missing file is an
// error that matches fs.ErrNotExist.
func (d *Dir) Remove(zone string) error {
	if err := os.Remove(d.Path(zone)); err != nil {
		return err
	}
	return d.Sync()
}

// SweepTemps deletes every temp file a crash left behind (".<zone>.zone~NNN"). Call it
// only while nothing writes zone files, e.g. before the agent starts its transfers.
func (d *Dir) SweepTemps() error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, ".") && strings.Contains(name, suffix+"~") {
			if err := os.Remove(filepath.Join(d.path, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return d.Sync()
}

// Sync makes renames and removals in the directory survive a crash. Concurrent callers
// share one fsync of the directory (group commit): each waits for one that started after
// it was called, so a burst of CREATEs costs one directory fsync per batch of zones, not
// one each, and every zone is still durable before its CREATE is answered.
func (d *Dir) Sync() error {
	return d.sync.do(func() error {
		f, err := os.Open(d.path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// groupSync runs a sync for many callers: a caller is covered by any run that started
// after it called, and waits for the next one while one is running.
type groupSync struct {
	mu                sync.Mutex
	cond              sync.Cond
	started, finished uint64 // runs started and finished
	running           bool
	err               error // of the last run finished
}

func (g *groupSync) do(run func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	need := g.started + 1 // the run in progress, if any, may have missed our change
	for g.finished < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		g.mu.Unlock()
		err := run()
		g.mu.Lock()
		g.running = false
		g.finished, g.err = g.started, err
		g.cond.Broadcast()
	}
	return g.err
}

// Read parses the zone's file and hands its records to each in batches of
// backend.ReadBatch, in file order (the agent writes the SOA first). The file is never
// held whole in memory. A missing file is an error that matches fs.ErrNotExist.
func (d *Dir) Read(ctx context.Context, zone string, each func([]dns.RR) error) error {
	path := d.Path(zone)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zp := dns.NewZoneParser(bufio.NewReaderSize(f, 256<<10), zone, path)
	batch := make([]dns.RR, 0, backend.ReadBatch)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		batch = append(batch, rr)
		if len(batch) == cap(batch) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := each(batch); err != nil {
				return err
			}
			batch = make([]dns.RR, 0, backend.ReadBatch)
		}
	}
	if err := zp.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return each(batch)
	}
	return nil
}

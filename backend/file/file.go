// Package file owns the embedded default backend: each zone is an RFC 1035 master file
// <zone_file_path>/<zone>.zone with absolute names, replaced atomically (temp file, then
// rename), for any DNS server that reads zone files (Knot, NSD, ...). Optional commands
// tell the server to reload or forget a zone.
package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/config"
)

var _ backend.Backend = (*Backend)(nil)

// Backend stores zones as master files in one directory. It holds no per-zone state: the
// caller serialises operations on one zone, and different zones touch different files.
type Backend struct {
	dir            string // absolute, so {file} is an absolute path
	mode           os.FileMode
	gid            int // -1: keep the agent's group
	reloadCommand  []string
	deleteCommand  []string
	commandTimeout time.Duration
}

// Open builds the backend from its [agent:NAME] section; it matches backend.Constructor.
func Open(s *config.Section) (backend.Backend, error) {
	b, err := New(ConfigFrom(s))
	if err != nil {
		return nil, fmt.Errorf("[%s] %w", s.Name(), err)
	}
	return b, nil
}

// New validates cfg, creates the zone directory if needed and checks that it is writable,
// so a bad setup fails at start (and in check-config) rather than at the first transfer.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("file backend: %w", err)
	}
	gid, err := lookupGroup(cfg.FileGroup)
	if err != nil {
		return nil, fmt.Errorf("file backend: file_group: %w", err)
	}
	dir, err := filepath.Abs(cfg.ZoneFilePath)
	if err != nil {
		return nil, fmt.Errorf("file backend: zone_file_path %s: %w", cfg.ZoneFilePath, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("file backend: zone_file_path: %w", err)
	}
	if err := checkWritable(dir); err != nil {
		return nil, fmt.Errorf("file backend: zone_file_path %s is not writable: %w", dir, err)
	}
	return &Backend{
		dir:            dir,
		mode:           cfg.FileMode,
		gid:            gid,
		reloadCommand:  cfg.ReloadCommand,
		deleteCommand:  cfg.DeleteCommand,
		commandTimeout: cfg.CommandTimeout,
	}, nil
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

// Serial reads the SOA at the top of the zone file, and nothing else of it.
func (b *Backend) Serial(_ context.Context, zone string) (uint32, error) {
	zone, err := canonical("serial", zone)
	if err != nil {
		return 0, err
	}
	path := b.path(zone)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("file backend: serial %s: %w", zone, backend.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("file backend: serial %s: %w", zone, err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, zone, path)
	rr, ok := zp.Next()
	if !ok {
		if err := zp.Err(); err != nil {
			return 0, fmt.Errorf("file backend: serial %s: %w", zone, err)
		}
		return 0, fmt.Errorf("file backend: serial %s: %s has no records", zone, path)
	}
	soa, isSOA := rr.(*dns.SOA)
	if !isSOA || !strings.EqualFold(soa.Hdr.Name, zone) {
		return 0, fmt.Errorf("file backend: serial %s: %s does not start with the zone's SOA", zone, path)
	}
	return soa.Serial, nil
}

// Create writes a new zone file. If the reload command then fails, the file is removed
// again: the zone was not created, and a retry must not find it half there.
func (b *Backend) Create(ctx context.Context, zone string, src backend.Source) error {
	zone, err := canonical("create", zone)
	if err != nil {
		return err
	}
	path := b.path(zone)
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("file backend: create %s: %s already exists", zone, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: create %s: %w", zone, err)
	}
	if err := b.write(ctx, zone, path, src); err != nil {
		return fmt.Errorf("file backend: create %s: %w", zone, err)
	}
	if err := b.run(ctx, b.reloadCommand, zone, path); err != nil {
		if rmErr := b.remove(path); rmErr != nil {
			return fmt.Errorf("file backend: create %s: reload: %w (and removing %s failed: %v)", zone, err, path, rmErr)
		}
		return fmt.Errorf("file backend: create %s: reload: %w (zone file removed)", zone, err)
	}
	return nil
}

// Replace swaps the zone file for the new stream. A failing reload command is reported
// but the new, complete file stays: it is the truth, and the next reload will pick it up.
func (b *Backend) Replace(ctx context.Context, zone string, src backend.Source) error {
	zone, err := canonical("replace", zone)
	if err != nil {
		return err
	}
	path := b.path(zone)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: replace %s: %w", zone, backend.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("file backend: replace %s: %w", zone, err)
	}
	if err := b.write(ctx, zone, path, src); err != nil {
		return fmt.Errorf("file backend: replace %s: %w", zone, err)
	}
	if err := b.run(ctx, b.reloadCommand, zone, path); err != nil {
		return fmt.Errorf("file backend: replace %s: reload: %w (new zone file kept)", zone, err)
	}
	return nil
}

// Delete removes the zone file and any temp file a crash left behind, then runs the
// delete command.
func (b *Backend) Delete(ctx context.Context, zone string) error {
	zone, err := canonical("delete", zone)
	if err != nil {
		return err
	}
	if err := b.removeTemps(zone); err != nil {
		return fmt.Errorf("file backend: delete %s: %w", zone, err)
	}
	path := b.path(zone)
	if err := b.remove(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: delete %s: %w", zone, backend.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("file backend: delete %s: %w", zone, err)
	}
	if err := b.run(ctx, b.deleteCommand, zone, path); err != nil {
		return fmt.Errorf("file backend: delete %s: %w", zone, err)
	}
	return nil
}

// Zones lists the zone files, sorted. Temp files and files whose name is not a canonical
// zone name were not written by the agent and are ignored.
func (b *Backend) Zones(context.Context) ([]string, error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("file backend: zones: %w", err)
	}
	var zones []string
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), zoneSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		zone := base + "."
		if backend.ValidateZoneName(zone) != nil || zone != strings.ToLower(zone) {
			continue
		}
		zones = append(zones, zone)
	}
	sort.Strings(zones)
	return zones, nil
}

const zoneSuffix = ".zone"

// canonical refuses names that could escape the directory or confuse a command, and
// folds case so one zone has one file.
func canonical(op, zone string) (string, error) {
	if err := backend.ValidateZoneName(zone); err != nil {
		return "", fmt.Errorf("file backend: %s: %w", op, err)
	}
	return strings.ToLower(zone), nil
}

func (b *Backend) path(zone string) string {
	return filepath.Join(b.dir, strings.TrimSuffix(zone, ".")+zoneSuffix)
}

// tempPrefix starts the names of a zone's temp files. They are hidden, do not end in
// .zone, and '~' cannot occur in a zone name, so one zone's prefix never matches another
// zone's temp files.
func tempPrefix(zone string) string {
	return "." + strings.TrimSuffix(zone, ".") + zoneSuffix + "~"
}

// write streams src into a temp file and renames it over path only once the stream has
// ended cleanly and the file is on disk; on any error the temp file is removed and path
// is untouched.
func (b *Backend) write(ctx context.Context, zone, path string, src backend.Source) (err error) {
	tmp, err := os.CreateTemp(b.dir, tempPrefix(zone)+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeRecords(ctx, tmp, zone, src); err != nil {
		return err
	}
	// Mode and group before the rename: the server must never see a file it cannot read.
	if err := tmp.Chmod(b.mode); err != nil {
		return err
	}
	if b.gid >= 0 {
		if err := tmp.Chown(-1, b.gid); err != nil {
			return fmt.Errorf("setting group %d: %w", b.gid, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(b.dir)
}

// writeRecords writes the stream batch by batch, so a large zone is never held in memory.
func writeRecords(ctx context.Context, f *os.File, zone string, src backend.Source) error {
	w := bufio.NewWriterSize(f, 64<<10)
	if _, err := fmt.Fprintf(w, "; %s mirrored by dnsagent\n", zone); err != nil {
		return err
	}
	check := recordCheck{zone: zone}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := src.Next()
		// Only io.EOF itself ends a stream: a wrapped EOF is a connection that broke.
		if err != nil && err != io.EOF {
			return fmt.Errorf("transfer failed: %w", err)
		}
		if checkErr := check.check(batch); checkErr != nil {
			return checkErr
		}
		for _, rr := range batch {
			if _, werr := w.WriteString(rr.String() + "\n"); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
	}
	if err := check.done(); err != nil {
		return err
	}
	return w.Flush()
}

// remove deletes a file and makes the removal durable.
func (b *Backend) remove(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(b.dir)
}

func (b *Backend) removeTemps(zone string) error {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return err
	}
	prefix := tempPrefix(zone)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(b.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// run runs a configured command for the zone, if there is one.
func (b *Backend) run(ctx context.Context, argv []string, zone, path string) error {
	if len(argv) == 0 {
		return nil
	}
	return runCommand(ctx, b.commandTimeout, expandArgs(argv, zone, path))
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

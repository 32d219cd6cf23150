// Package file owns the embedded default backend: each zone is an RFC 1035 master file
// <zone_file_path>/<zone>.zone with absolute names, replaced atomically (temp file, then
// rename), for any DNS server that reads zone files (Knot, NSD, ...). Optional commands
// tell the server to reload or forget a zone.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonefile"
	"github.com/miekg/dns"
)

var _ backend.Backend = (*Backend)(nil)

// Backend stores zones as master files in one directory. It holds no per-zone state: the
// caller serialises operations on one zone, and different zones touch different files.
type Backend struct {
	dir            *zonefile.Dir // absolute, so {file} is an absolute path
	reloadCommand  []string
	deleteCommand  []string
	commandTimeout time.Duration
}

// New validates cfg, creates the zone directory if needed and checks that it is writable,
// so a bad setup fails at start (and in check-config) rather than at the first transfer.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("file backend: %w", err)
	}
	dir, err := zonefile.Open(cfg.ZoneFilePath, cfg.FileMode, cfg.FileGroup)
	if err != nil {
		return nil, fmt.Errorf("file backend: %w", err)
	}
	return &Backend{
		dir:            dir,
		reloadCommand:  cfg.ReloadCommand,
		deleteCommand:  cfg.DeleteCommand,
		commandTimeout: cfg.CommandTimeout,
	}, nil
}

// Serial reads the SOA at the top of the zone file, and nothing else of it. A zone whose
// last reload command failed has it run again first: the file is newer than what the
// server serves, and the check must not find the zone up to date until the server has it.
func (b *Backend) Serial(ctx context.Context, zone string) (uint32, error) {
	zone, err := canonical("serial", zone)
	if err != nil {
		return 0, err
	}
	serial, err := b.dir.Serial(zone)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("file backend: serial %s: %w", zone, backend.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("file backend: serial %s: %w", zone, err)
	}
	if _, err := b.rerun(ctx, zone, reloadFailed, b.reloadCommand); err != nil {
		return 0, fmt.Errorf("file backend: serial %s: the reload that failed, run again: %w", zone, err)
	}
	return serial, nil
}

// Markers of a command that failed, beside the zone file (".<file>.reload-failed"):
// the command is run again until it succeeds, across restarts too. Zones and SweepTemps
// leave them alone.
const (
	reloadFailed = "reload-failed"
	deleteFailed = "delete-failed"
)

func (b *Backend) marker(zone, kind string) string {
	path := b.dir.Path(zone)
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+kind)
}

// runOrMark runs a command for the zone; when it fails, a marker of kind is left so that
// rerun runs it again.
func (b *Backend) runOrMark(ctx context.Context, zone, kind string, argv []string) error {
	err := b.run(ctx, argv, zone, b.dir.Path(zone))
	if err != nil {
		if werr := os.WriteFile(b.marker(zone, kind), nil, 0o600); werr != nil {
			return fmt.Errorf("%w (and recording it for a retry failed: %v)", err, werr)
		}
	}
	return err
}

// rerun runs the command of a marker of kind left for the zone, and removes the marker
// once it succeeds; it reports whether there was one (without, it does nothing).
func (b *Backend) rerun(ctx context.Context, zone, kind string, argv []string) (marked bool, err error) {
	marker := b.marker(zone, kind)
	if _, err := os.Lstat(marker); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := b.run(ctx, argv, zone, b.dir.Path(zone)); err != nil {
		return true, err
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, err
	}
	return true, nil
}

// Create writes a new zone file. If making it durable or the reload command then fails,
// the file is removed again: the zone was not created, and a retry must not find it half
// there.
func (b *Backend) Create(ctx context.Context, zone string, src backend.Source) error {
	zone, err := canonical("create", zone)
	if err != nil {
		return err
	}
	path := b.dir.Path(zone)
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("file backend: create %s: %s already exists", zone, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: create %s: %w", zone, err)
	}
	// A delete command still failing for an earlier zone of this name is moot now.
	os.Remove(b.marker(zone, deleteFailed)) //nolint:errcheck // usually there is none
	var written func()
	if len(b.reloadCommand) == 0 {
		// Once the file is written what remains is waiting for the disk: the file's fsync,
		// then the directory's, shared with the zones created meanwhile (group commit).
		// A reload command, work for the DNS server, keeps the transfer worker.
		written = func() { backend.Committed(ctx) }
	}
	tmp, _, err := b.dir.WriteStreamThen(ctx, backend.StreamCheck{Zone: zone}, src, written)
	if err == nil {
		err = b.dir.Rename(tmp, zone)
	}
	if err != nil {
		return fmt.Errorf("file backend: create %s: %w", zone, err)
	}
	if err := b.dir.Sync(); err != nil {
		if rmErr := b.dir.Remove(zone); rmErr != nil {
			return fmt.Errorf("file backend: create %s: making the rename durable: %w (and removing %s failed: %v)", zone, err, path, rmErr)
		}
		return fmt.Errorf("file backend: create %s: making the rename durable: %w (zone file removed)", zone, err)
	}
	if err := b.run(ctx, b.reloadCommand, zone, path); err != nil {
		if rmErr := b.dir.Remove(zone); rmErr != nil {
			return fmt.Errorf("file backend: create %s: reload: %w (and removing %s failed: %v)", zone, err, path, rmErr)
		}
		return fmt.Errorf("file backend: create %s: reload: %w (zone file removed)", zone, err)
	}
	return nil
}

// Replace swaps the zone file for the new stream. A failing reload command is reported
// but the new, complete file stays: it is the truth, and the reload is run again at the
// zone's next check (Serial) until it succeeds.
func (b *Backend) Replace(ctx context.Context, zone string, src backend.Source) error {
	zone, err := canonical("replace", zone)
	if err != nil {
		return err
	}
	path := b.dir.Path(zone)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: replace %s: %w", zone, backend.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("file backend: replace %s: %w", zone, err)
	}
	if err := b.write(ctx, zone, src); err != nil {
		return fmt.Errorf("file backend: replace %s: %w", zone, err)
	}
	if err := b.runOrMark(ctx, zone, reloadFailed, b.reloadCommand); err != nil {
		return fmt.Errorf("file backend: replace %s: reload: %w (new zone file kept; the reload is run again at the next check)", zone, err)
	}
	return nil
}

// Delete removes the zone file, then runs the delete command. A delete command that fails
// is run again by the next DELETE of the zone (Designate's retry), though the file is gone
// by then. No temp file of the zone is left to remove: a failed write removes its own, and
// what a crash left behind is swept at start-up (Sweep); so a DELETE does not list the
// directory, whose size grows with the zones held.
func (b *Backend) Delete(ctx context.Context, zone string) error {
	zone, err := canonical("delete", zone)
	if err != nil {
		return err
	}
	os.Remove(b.marker(zone, reloadFailed)) //nolint:errcheck // the zone goes: no reload is due
	if err := b.dir.Remove(zone); errors.Is(err, fs.ErrNotExist) {
		marked, err := b.rerun(ctx, zone, deleteFailed, b.deleteCommand)
		switch {
		case !marked:
			return fmt.Errorf("file backend: delete %s: %w", zone, backend.ErrNotFound)
		case err != nil:
			return fmt.Errorf("file backend: delete %s: the delete command that failed, run again: %w", zone, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("file backend: delete %s: %w", zone, err)
	}
	if err := b.runOrMark(ctx, zone, deleteFailed, b.deleteCommand); err != nil {
		return fmt.Errorf("file backend: delete %s: %w (the next DELETE runs it again)", zone, err)
	}
	return nil
}

// Zones lists the zones that have a zone file, sorted (zonefile.Dir.Zones).
func (b *Backend) Zones(context.Context) ([]string, error) {
	zones, err := b.dir.Zones()
	if err != nil {
		return nil, fmt.Errorf("file backend: zones: %w", err)
	}
	return zones, nil
}

// canonical checks and folds the zone name every operation gets (backend.CheckZone).
func canonical(op, zone string) (string, error) { return backend.CheckZone("file", op, zone) }

// write replaces the zone file with the stream once it has ended cleanly and is on disk;
// on any error the zone file is untouched.
func (b *Backend) write(ctx context.Context, zone string, src backend.Source) error {
	return b.dir.Write(ctx, backend.StreamCheck{Zone: zone}, src)
}

// run runs a configured command for the zone, if there is one.
func (b *Backend) run(ctx context.Context, argv []string, zone, path string) error {
	if len(argv) == 0 {
		return nil
	}
	return runCommand(ctx, b.commandTimeout, expandArgs(argv, zone, path))
}

var _ backend.Sweeper = (*Backend)(nil)

// Sweep implements backend.Sweeper: partial temp files of a killed run go.
func (b *Backend) Sweep(context.Context) error { return b.dir.SweepTemps() }

// ReplacesSmallZones implements zonediff.SmallZoneReplacer: Apply writes the zone's whole
// file, as a replace does, so a small zone's diff saves nothing and its index is not kept.
func (b *Backend) ReplacesSmallZones() {}

// Fingerprint implements zonediff.Fingerprinter: the zone file's size and modification
// time, which any edit behind the agent's back changes.
func (b *Backend) Fingerprint(_ context.Context, zone string) (string, error) {
	zone, err := canonical("fingerprint", zone)
	if err != nil {
		return "", err
	}
	info, err := os.Stat(b.dir.Path(zone))
	if err != nil {
		return "", fmt.Errorf("file backend: fingerprint %s: %w", zone, err)
	}
	return fmt.Sprintf("size %d, mtime %d", info.Size(), info.ModTime().UnixNano()), nil
}

var _ backend.Reader = (*Backend)(nil)

// Read implements backend.Reader: the zone file as it is on disk now, edits made behind
// the agent's back included.
func (b *Backend) Read(ctx context.Context, zone string, each func([]dns.RR) error) error {
	zone, err := canonical("read", zone)
	if err != nil {
		return err
	}
	err = b.dir.Read(ctx, zone, each)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file backend: read %s: %w", zone, backend.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("file backend: read %s: %w", zone, err)
	}
	return nil
}

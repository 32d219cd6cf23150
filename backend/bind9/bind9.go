// Package bind9 owns the BIND 9 backend: the agent writes each zone as a master file
// under zone_file_path and drives named over rndc (addzone, reload, freeze/thaw, delzone);
// in update mode incremental changes go to named as signed RFC 2136 UPDATEs instead. named
// is asked for serials with SOA queries. A zone belongs to the agent only if named's
// configuration for it (rndc showzone) points at a file under zone_file_path.
package bind9

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonefile"
)

var (
	_ backend.Backend     = (*Backend)(nil)
	_ backend.Incremental = (*Backend)(nil)
)

// Backend keeps zones in named. The caller serialises operations on one zone; different
// zones proceed in parallel.
type Backend struct {
	cfg  Config
	dir  *zonefile.Dir
	rndc RNDC

	mu sync.Mutex
	// owned remembers zones showzone proved ours, so a Serial per NOTIFY or refresh
	// costs one SOA query and no rndc run. Only Delete forgets.
	owned map[string]bool
}

// New validates cfg, creates the zone directory if needed and checks that it is
// writable, so a bad setup fails at start rather than at the first CREATE. rndc runs the
// control commands; nil means the rndc program (NewExec).
func New(cfg Config, rndc RNDC) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bind9 backend: %w", err)
	}
	if rndc == nil {
		r, err := newRNDC(cfg)
		if err != nil {
			return nil, fmt.Errorf("bind9 backend: %w", err)
		}
		rndc = r
	}
	dir, err := zonefile.Open(cfg.ZoneFilePath, cfg.FileMode, cfg.FileGroup)
	if err != nil {
		return nil, fmt.Errorf("bind9 backend: %w", err)
	}
	return &Backend{cfg: cfg, dir: dir, rndc: rndc, owned: map[string]bool{}}, nil
}

// Serial asks named for the zone's SOA. When named does not serve the zone, only rndc
// showzone decides whether it is gone (ErrNotFound), someone else's (ErrNotOwned), or ours
// and not loaded right now: named starting and loading its zones answers SERVFAIL for a
// while, and taking that for "gone" would drop the zone from every refresh and retry.
func (b *Backend) Serial(ctx context.Context, zone string) (uint32, error) {
	zone, err := canonical("serial", zone)
	if err != nil {
		return 0, err
	}
	serial, unserved, err := b.querySOA(ctx, zone)
	if err == nil && unserved != "" {
		err = b.whyUnserved(ctx, zone, unserved)
	}
	if err == nil {
		err = b.ensureOwned(ctx, zone)
	}
	if err != nil {
		return 0, fmt.Errorf("bind9 backend: serial %s: %w", zone, err)
	}
	return serial, nil
}

// whyUnserved explains a zone named answered for with unserved (an rcode, a referral).
// The zone is not found when named does not have it, or has it with its file gone: then
// nothing can load it again and a CREATE must put it back. Any other case is transient.
func (b *Backend) whyUnserved(ctx context.Context, zone, unserved string) error {
	found, file, err := b.showzone(ctx, zone)
	switch {
	case err != nil:
		return fmt.Errorf("named answers %s to its SOA query, and showzone failed: %w", unserved, err)
	case !found:
		return fmt.Errorf("named does not have the zone: %w", backend.ErrNotFound)
	case !b.ours(file):
		return notOwned(file)
	case !exists(b.dir.Path(zone)):
		return fmt.Errorf("named has the zone but its file %s is gone: %w", b.dir.Path(zone), backend.ErrNotFound)
	}
	b.setOwned(zone, true)
	return fmt.Errorf("named has the zone but answers %s to its SOA query (starting or loading it?); will retry", unserved)
}

// Create writes the zone file and adds the zone to named. If named refuses the zone the
// file is removed again, so a retry finds nothing half there.
func (b *Backend) Create(ctx context.Context, zone string, src backend.Source) error {
	zone, err := canonical("create", zone)
	if err != nil {
		return err
	}
	if err := b.create(ctx, zone, src); err != nil {
		return fmt.Errorf("bind9 backend: create %s: %w", zone, err)
	}
	return nil
}

func (b *Backend) create(ctx context.Context, zone string, src backend.Source) error {
	// Without a file of ours named cannot have the zone as ours, loaded or not, so a new
	// zone (the usual case) goes straight to addzone: one control command per create.
	if exists(b.dir.Path(zone)) {
		if err := b.clearStale(ctx, zone); err != nil {
			return err
		}
	}
	tmp, soa, err := b.writeTemp(ctx, zone, src)
	if err != nil {
		return err
	}
	if err := b.install(tmp, zone); err != nil {
		return err
	}
	_, err = b.rndc.Run(ctx, b.addzoneArgs(zone)...)
	if said(err, "already exists") {
		err = b.readd(ctx, zone)
	}
	if err != nil {
		return b.undoCreate(ctx, zone, false, err)
	}
	if err := b.waitServed(ctx, zone, soa.Serial); err != nil {
		return b.undoCreate(ctx, zone, true, err)
	}
	b.setOwned(zone, true)
	return nil
}

// clearStale deals with a zone file of ours found before a create: named serving the
// zone means it exists already; named having it without serving it (its file broken)
// means starting over; named not having it means a crash left the file.
func (b *Backend) clearStale(ctx context.Context, zone string) error {
	found, file, err := b.showzone(ctx, zone)
	if err != nil || !found {
		return err
	}
	if err := b.dropUnserved(ctx, zone, file); err != nil {
		return err
	}
	_, err = b.removeFiles(zone)
	return err
}

// dropUnserved deletes from named a zone of ours (its file is under zone_file_path) that
// named has but does not serve; one it serves exists already. Without -clean, so no
// removal by named can race the new file.
func (b *Backend) dropUnserved(ctx context.Context, zone, file string) error {
	if !b.ours(file) {
		return notOwned(file)
	}
	if _, unserved, err := b.querySOA(ctx, zone); err != nil {
		return err
	} else if unserved == "" {
		return errors.New("the zone exists already")
	}
	_, err := b.rndc.Run(ctx, b.zoneArgs("delzone", zone)...)
	return err
}

// readd handles addzone refused because named has the zone, though no file of ours was
// there: someone else's zone, or ours with its file lost. The new file is in place.
func (b *Backend) readd(ctx context.Context, zone string) error {
	found, file, err := b.showzone(ctx, zone)
	switch {
	case err != nil:
		return err
	case !found:
		return errors.New("named refused addzone as existing, and showzone does not find the zone")
	}
	if err := b.dropUnserved(ctx, zone, file); err != nil {
		return err
	}
	_, err = b.rndc.Run(ctx, b.addzoneArgs(zone)...)
	return err
}

// undoCreate takes back a create that failed after the zone file was written, even when
// ctx has ended, and returns cause with what was undone.
func (b *Backend) undoCreate(ctx context.Context, zone string, added bool, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RNDCTimeout)
	defer cancel()
	if added {
		if _, err := b.rndc.Run(ctx, b.zoneArgs("delzone", zone)...); err != nil {
			return fmt.Errorf("%w (and removing the zone from named failed: %v)", cause, err)
		}
	}
	if _, err := b.removeFiles(zone); err != nil {
		return fmt.Errorf("%w (and removing its files failed: %v)", cause, err)
	}
	return fmt.Errorf("%w (zone file removed)", cause)
}

// Replace swaps the zone for the complete stream. The new file is written aside first;
// named sees it only once it is complete.
func (b *Backend) Replace(ctx context.Context, zone string, src backend.Source) error {
	zone, err := canonical("replace", zone)
	if err != nil {
		return err
	}
	if err := b.ensureOwned(ctx, zone); err != nil {
		return fmt.Errorf("bind9 backend: replace %s: %w", zone, err)
	}
	tmp, soa, err := b.writeTemp(ctx, zone, src)
	if err != nil {
		return fmt.Errorf("bind9 backend: replace %s: %w", zone, err)
	}
	defer os.Remove(tmp) // gone already once installed
	written := func(context.Context) (string, error) { return tmp, nil }
	if err := b.load(ctx, zone, written, soa.Serial); err != nil {
		return fmt.Errorf("bind9 backend: replace %s: %w", zone, err)
	}
	return nil
}

// Delete removes the zone from named (delzone -clean) and every file of it from the
// directory. A zone that is not ours is left alone.
func (b *Backend) Delete(ctx context.Context, zone string) error {
	zone, err := canonical("delete", zone)
	if err != nil {
		return err
	}
	found, file, err := b.showzone(ctx, zone)
	if err != nil {
		return fmt.Errorf("bind9 backend: delete %s: %w", zone, err)
	}
	if found && !b.ours(file) {
		return fmt.Errorf("bind9 backend: delete %s: %w", zone, notOwned(file))
	}
	b.setOwned(zone, false)
	if found {
		if _, err := b.rndc.Run(ctx, b.zoneArgs("delzone", zone, "-clean")...); err != nil {
			return fmt.Errorf("bind9 backend: delete %s: %w", zone, err)
		}
		b.waitCleaned(ctx, zone)
	}
	existed, err := b.removeFiles(zone)
	if err != nil {
		return fmt.Errorf("bind9 backend: delete %s: %w", zone, err)
	}
	if !found && !existed {
		return fmt.Errorf("bind9 backend: delete %s: %w", zone, backend.ErrNotFound)
	}
	return nil
}

// waitCleaned gives named a moment to remove the zone's files itself: delzone -clean
// removes them after it has answered, and a removal that came after a quick re-create
// would take the new zone file with it. If named cannot remove them (no permission on
// the directory) the caller does after at most two seconds.
func (b *Backend) waitCleaned(ctx context.Context, zone string) {
	path := b.dir.Path(zone)
	poll(ctx, min(2*time.Second, b.cfg.RNDCTimeout), func() bool {
		return !exists(path) && !exists(path+journalSuffix)
	})
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// Zones lists the zone files under zone_file_path, sorted. The directory is the agent's
// own, and listing it needs neither named nor an rndc run per zone; a file named does not
// have (left by a crash between writing it and addzone) is listed, and Serial then reports
// the zone as not found.
func (b *Backend) Zones(context.Context) ([]string, error) {
	zones, err := b.dir.Zones()
	if err != nil {
		return nil, fmt.Errorf("bind9 backend: zones: %w", err)
	}
	return zones, nil
}

// canonical checks and folds the zone name every operation gets (backend.CheckZone).
func canonical(op, zone string) (string, error) { return backend.CheckZone("bind9", op, zone) }

// zoneArgs builds `CMD [flags] NAME [IN VIEW]`.
func (b *Backend) zoneArgs(cmd, zone string, flags ...string) []string {
	args := append([]string{cmd}, flags...)
	args = append(args, strings.TrimSuffix(zone, "."))
	if b.cfg.View != "" {
		args = append(args, "IN", b.cfg.View)
	}
	return args
}

// addzoneArgs builds the addzone command. check-names ignore and check-integrity no
// because the primary's data is the truth: a BIND secondary accepts names like foo_bar
// that a primary zone would otherwise refuse to load. masterfile-format text because the
// agent reads back what `rndc freeze` dumps.
func (b *Backend) addzoneArgs(zone string) []string {
	var c strings.Builder
	fmt.Fprintf(&c, `{ type primary; file "%s"; check-names ignore; check-integrity no; masterfile-format text;`, b.dir.Path(zone))
	if b.cfg.UpdateMode == ModeUpdate {
		fmt.Fprintf(&c, ` update-policy { grant "%s" zonesub ANY; };`, strings.TrimSuffix(b.cfg.UpdateKey.Name, "."))
	}
	if zc := strings.TrimSpace(b.cfg.ZoneConfig); zc != "" {
		c.WriteString(" " + zc)
	}
	c.WriteString(" };")
	return append(b.zoneArgs("addzone", zone), c.String())
}

// showzone asks named for the zone's configuration: whether it has the zone, and the
// file it loads it from.
func (b *Backend) showzone(ctx context.Context, zone string) (found bool, file string, err error) {
	out, err := b.rndc.Run(ctx, b.zoneArgs("showzone", zone)...)
	if said(err, "no matching zone") {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	return true, fileOf(out), nil
}

// ours reports whether a zone file named loads lies under zone_file_path.
func (b *Backend) ours(file string) bool {
	return b.dir.Contains(file)
}

func notOwned(file string) error {
	if file == "" {
		return fmt.Errorf("named has the zone without a zone file: %w", backend.ErrNotOwned)
	}
	return fmt.Errorf("named loads it from %s, outside zone_file_path: %w", file, backend.ErrNotOwned)
}

// ensureOwned returns nil for a zone named has with its file under zone_file_path,
// ErrNotFound when named does not have it, ErrNotOwned when it is someone else's.
func (b *Backend) ensureOwned(ctx context.Context, zone string) error {
	b.mu.Lock()
	known := b.owned[zone]
	b.mu.Unlock()
	if known {
		return nil
	}
	found, file, err := b.showzone(ctx, zone)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("named does not have the zone: %w", backend.ErrNotFound)
	case !b.ours(file):
		return notOwned(file)
	}
	b.setOwned(zone, true)
	return nil
}

func (b *Backend) setOwned(zone string, owned bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if owned {
		b.owned[zone] = true
	} else {
		delete(b.owned, zone)
	}
}

var _ backend.Sweeper = (*Backend)(nil)

// Sweep implements backend.Sweeper: partial temp files of a killed run go.
func (b *Backend) Sweep(context.Context) error { return b.dir.SweepTemps() }

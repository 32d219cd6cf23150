// Package powerdns owns the backend that writes zones straight into PowerDNS's generic
// MySQL schema (gmysql of PowerDNS 4.7: tables domains, records, domainmetadata,
// comments, cryptokeys; schema.mysql.sql of pdns-backend-mysql), so pdns_server serves
// them with neither secondary mode nor its HTTP API. It owns exactly the zones whose
// domains.account is the configured account, stores every fact PowerDNS relies on when
// reading rows (SPEC §4 powerdns), changes a zone in one transaction, and tells
// pdns_server through pdns_control when something changed.
package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dnsagent/dnsagent/backend"
)

var (
	_ backend.Backend     = (*Backend)(nil)
	_ backend.Incremental = (*Backend)(nil)
	_ backend.Sweeper     = (*Backend)(nil)
)

// maxBatchBytes bounds one multi-row INSERT well under MariaDB's default
// max_allowed_packet (16 MiB), whatever batch_size says: TXT rows can be 64000 bytes.
const maxBatchBytes = 1 << 20

// maxIdleConns: connections kept open between changes, enough for the changes and the
// serial lookups of a burst of concurrent CREATEs (idle ones close after a minute).
const maxIdleConns = 64

// Backend stores zones in PowerDNS's gmysql tables.
type Backend struct {
	store   store
	account string
	kind    string
	batch   int
	ctl     control
	retry   retryPolicy
	stats   *statistics
}

// New validates cfg and prepares the connection pool. It does not connect: a database
// that is down at start-up is retried per change, and Check tells check-config whether it
// is reachable.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("powerdns backend: %w", err)
	}
	mcs, err := cfg.mysqlConfigs()
	if err != nil {
		return nil, fmt.Errorf("powerdns backend: %w", err)
	}
	ns := &nodes{failback: cfg.Failback}
	for _, mc := range mcs {
		connector, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, fmt.Errorf("powerdns backend: %w", err)
		}
		db := sql.OpenDB(readCommitted{connector})
		// MariaDB closes idle connections after wait_timeout; recycle ours before that.
		db.SetConnMaxIdleTime(time.Minute)
		// database/sql keeps 2 idle connections by default: under a burst of creates each
		// change beyond those opened a connection and closed it again (TCP, handshake,
		// authentication and a server thread per change, half the CPU of a small create).
		db.SetMaxIdleConns(maxIdleConns)
		ns.dbs, ns.addrs = append(ns.dbs, db), append(ns.addrs, mc.Addr)
	}
	run := runCommand
	if directControl(cfg) {
		run = controlSocket{path: controlSocketPath(cfg.PDNSSocketDir), next: runCommand}.run
	}
	b := newBackend(&sqlStore{nodes: ns, nameIndex: cfg.NameIndex}, cfg, run)
	if len(ns.dbs) > 1 {
		// Enough attempts to try every node once more than the single-server policy.
		b.retry.attempts += len(ns.dbs)
	}
	return b, nil
}

func newBackend(st store, cfg Config, run runner) *Backend {
	return &Backend{
		store:   st,
		account: cfg.Account,
		kind:    cfg.ZoneKind,
		batch:   cfg.BatchSize,
		ctl:     newControl(cfg, run),
		retry:   defaultRetry,
		stats:   &statistics{},
	}
}

// Close releases the database connections.
func (b *Backend) Close() error { return b.store.close() }

// Check reports whether the database and, when used, pdns_control answer; check-config
// shows it as a warning, since either may come up after the agent.
func (b *Backend) Check(ctx context.Context) error {
	var errs []error
	if err := b.store.ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("powerdns backend: database: %w", err))
	}
	if err := b.ctl.ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("powerdns backend: pdns_control is not reachable (zones would be served late, after PowerDNS's zone cache refresh): %w", err))
	}
	return errors.Join(errs...)
}

// Sweep runs at start: it creates the name index when it is missing (name_index), before
// any change needs it (Apply tries again if the database was not up yet), and refreshes
// MariaDB's statistics of records (analyze.go). A database that cannot be reached is not
// waited for twice: the refresh is left to the creates.
func (b *Backend) Sweep(ctx context.Context) error {
	err := b.store.prepare(ctx)
	if err != nil && nodeError(err) {
		return err
	}
	return errors.Join(err, b.stats.refresh(ctx, b.store))
}

// Serial returns the serial of the stored SOA.
func (b *Backend) Serial(ctx context.Context, zone string) (uint32, error) {
	name, err := rowZone("serial", zone)
	if err != nil {
		return 0, err
	}
	d, soa, err := b.store.lookup(ctx, name)
	if err != nil {
		return 0, b.lookupErr("serial", zone, err)
	}
	if d.Account != b.account {
		return 0, b.notOwned("serial", zone, d)
	}
	if soa == "" {
		return 0, fmt.Errorf("powerdns backend: serial %s: the zone has no SOA record", zone)
	}
	serial, err := soaSerial(soa)
	if err != nil {
		return 0, fmt.Errorf("powerdns backend: serial %s: %w", zone, err)
	}
	return serial, nil
}

// Create stores a new zone. A zone already in the database is refused: as ours it exists
// already, as someone else's it is not ours to touch. The engine asks Serial before it
// transfers, so a CREATE of a zone held is refused before any transfer; one created
// meanwhile is refused by the domains row's unique name (load). If pdns_server cannot be
// told about the new zone, the zone is removed again: it was not created as far as
// PowerDNS knows, and a retry must start over.
func (b *Backend) Create(ctx context.Context, zone string, src backend.Source) error {
	name, err := rowZone("create", zone)
	if err != nil {
		return err
	}
	sp, err := spoolZone(ctx, zone, src)
	if err != nil {
		return fmt.Errorf("powerdns backend: create %s: %w", zone, err)
	}
	defer sp.close()
	var staged bool
	err = b.retry.do(ctx, func(attempt int) (err error) {
		mode := mustCreate
		if attempt > 1 {
			// A retry after a commit whose reply was lost may find the zone created by the
			// previous attempt: replacing it with the same data is then right.
			mode = createOrReplace
		}
		staged, err = b.loadZone(ctx, name, sp, mode)
		return err
	})
	if err != nil {
		return fmt.Errorf("powerdns backend: create %s: %w", zone, err)
	}
	if err := b.ctl.presigned(sp.sign).afterCommit(ctx, name, true); err != nil {
		if delErr := b.deleteRows(ctx, "create", zone, name); delErr != nil {
			return fmt.Errorf("powerdns backend: create %s: %w (removing the zone again failed: %v)", zone, err, delErr)
		}
		return fmt.Errorf("powerdns backend: create %s: %w (zone removed again)", zone, err)
	}
	if staged {
		b.dropRetired(ctx, name) // a retry's replace of a zone created by a lost commit
	}
	b.stats.created(b.store)
	return nil
}

// Replace swaps the zone's records for the stream in one transaction: PowerDNS's readers
// see the old complete version until the commit, the new one after it.
func (b *Backend) Replace(ctx context.Context, zone string, src backend.Source) error {
	name, err := rowZone("replace", zone)
	if err != nil {
		return err
	}
	d, _, err := b.store.lookup(ctx, name)
	if err != nil {
		return b.lookupErr("replace", zone, err)
	}
	if d.Account != b.account {
		return b.notOwned("replace", zone, d)
	}
	sp, err := spoolZone(ctx, zone, src)
	if err != nil {
		return fmt.Errorf("powerdns backend: replace %s: %w", zone, err)
	}
	defer sp.close()
	var staged bool
	err = b.retry.do(ctx, func(int) (err error) { staged, err = b.loadZone(ctx, name, sp, mustExist); return err })
	if err != nil {
		return fmt.Errorf("powerdns backend: replace %s: %w", zone, err)
	}
	// A staged replace gave the zone a new domains.id: PowerDNS's zone cache must learn it.
	if err := b.ctl.presigned(sp.sign).afterCommit(ctx, name, staged); err != nil {
		return fmt.Errorf("powerdns backend: replace %s: committed, but %w", zone, err)
	}
	if staged {
		b.dropRetired(ctx, name)
	}
	return nil
}

// Delete removes the zone's rows from domains, records, domainmetadata, comments and
// cryptokeys, then has pdns_server forget it.
func (b *Backend) Delete(ctx context.Context, zone string) error {
	name, err := rowZone("delete", zone)
	if err != nil {
		return err
	}
	if err := b.deleteRows(ctx, "delete", zone, name); err != nil {
		return err
	}
	if err := b.ctl.afterCommit(ctx, name, true); err != nil {
		return fmt.Errorf("powerdns backend: delete %s: deleted from the database, but %w", zone, err)
	}
	return nil
}

// deleteRows deletes the zone in one transaction; a zone too big for one on Galera is
// retired in it, and its rows then deleted in chunks (sqlTx.deleteDomain).
func (b *Backend) deleteRows(ctx context.Context, op, zone, name string) error {
	var left bool
	err := b.retry.do(ctx, func(int) error {
		return b.inTx(ctx, func(tx storeTx) error {
			d, err := tx.domain(ctx, name)
			if err != nil {
				return b.lookupErr(op, zone, err)
			}
			if d.Account != b.account {
				return b.notOwned(op, zone, d)
			}
			if left, err = tx.deleteDomain(ctx, d.ID, name); err != nil {
				return fmt.Errorf("powerdns backend: %s %s: %w", op, zone, err)
			}
			return nil
		})
	})
	if err == nil && left {
		b.dropLeft(ctx, name, "%")
	}
	return err
}

// Zones lists the zones whose account is the agent's.
func (b *Backend) Zones(ctx context.Context) ([]string, error) {
	names, err := b.store.zones(ctx, b.account)
	if err != nil {
		return nil, fmt.Errorf("powerdns backend: zones: %w", err)
	}
	zones := make([]string, 0, len(names))
	for _, n := range names {
		zones = append(zones, n+".")
	}
	sort.Strings(zones)
	return zones, nil
}

// loadMode says what load expects of the zone's domain row.
type loadMode int

const (
	mustCreate      loadMode = iota // absent: create it
	mustExist                       // present: replace its rows
	createOrReplace                 // either
)

// loadTarget reads the zone's domains row, locked, and checks it against the load's mode:
// whether the zone exists, or why the load may not go on.
func (b *Backend) loadTarget(ctx context.Context, tx storeTx, name string, mode loadMode) (domain, bool, error) {
	d, err := tx.domain(ctx, name)
	switch {
	case errors.Is(err, errNoDomain):
		if mode == mustExist {
			return d, false, fmt.Errorf("zone %s.: %w", name, backend.ErrNotFound)
		}
		return d, false, nil
	case err != nil:
		return d, false, err
	case d.Account != b.account:
		return d, false, b.heldBy(d)
	case mode == mustCreate:
		return d, false, fmt.Errorf("the zone exists already")
	}
	return d, true, nil
}

// load writes the spooled zone in one transaction.
func (b *Backend) load(ctx context.Context, name string, sp *spool, mode loadMode) error {
	return b.inTx(ctx, func(tx storeTx) error {
		id, exists, err := b.target(ctx, tx, name, mode)
		if err != nil {
			return err
		}
		// A domains row created just now has no metadata to clear.
		if stx, ok := tx.(signingTx); ok && (exists || sp.sign.presigned) {
			if err := stx.setSigning(ctx, id, sp.sign); err != nil {
				return err
			}
		}
		tx, err = b.insertSpool(ctx, tx, id, name, sp, b.batch, nil)
		if err != nil {
			return err
		}
		return tx.insertMissingENTs(ctx, id)
	})
}

// target returns the id of the domains row a load writes: the zone's own, emptied, or
// one created now (exists false). A create inserts the row straight away, its unique name
// the lock; only when the name is taken does it read the row to say by whom.
func (b *Backend) target(ctx context.Context, tx storeTx, name string, mode loadMode) (id int64, exists bool, err error) {
	if mode != mustCreate {
		d, exists, err := b.loadTarget(ctx, tx, name, mode)
		if err != nil {
			return 0, false, err
		}
		if exists {
			if err := tx.clearRecords(ctx, d.ID); err != nil {
				return 0, false, err
			}
			return d.ID, true, tx.setKind(ctx, d.ID, b.kind)
		}
	}
	id, err = tx.createDomain(ctx, name, b.kind, b.account)
	if errors.Is(err, errDomainExists) && mode == mustCreate {
		if _, _, why := b.loadTarget(ctx, tx, name, mode); why != nil {
			return 0, false, why
		}
	}
	return id, false, err
}

// insertSpool inserts the rows in batches, with auth from the spool's cuts, and collects
// every name between the apex and an owner as a candidate empty non-terminal; the
// database keeps the candidates and turns those without rows of their own into ENT rows.
// A zone that fits in one batch (most are small) is written by one INSERT, its ENT rows
// included: every name is at hand then, and the candidates table would cost five more
// statements.
//
// With cut (staged loads, stage.go), the rows go in several transactions: after each
// batch, cut gets the rows written and returns the transaction to go on with; and the SOA
// row is written disabled, as the switch enables it (stage.go says why). It returns the
// transaction it ended in.
func (b *Backend) insertSpool(ctx context.Context, tx storeTx, id int64, zone string, sp *spool, batch int,
	cut func(tx storeTx, rows int) (storeTx, error)) (storeTx, error) {
	rd, err := sp.reader()
	if err != nil {
		return tx, err
	}
	rows := make([]row, 0, batch)
	var ents []row
	seen := map[string]bool{} // candidates of this batch only: the database deduplicates
	once := sp.dedup()
	size := 0
	flushed := false
	flush := func(last bool) error {
		if last && !flushed && cut == nil {
			rows, ents = append(rows, missingENTs(rows, ents)...), nil
		}
		flushed = true
		if err := tx.insertRecords(ctx, id, rows); err != nil {
			return err
		}
		if len(ents) > 0 {
			if err := tx.addENTCandidates(ctx, ents); err != nil {
				return err
			}
		}
		n := len(rows) + len(ents)
		rows, ents, size = rows[:0], ents[:0], 0
		clear(seen)
		if cut != nil {
			var err error
			tx, err = cut(tx, n)
			return err
		}
		return nil
	}
	for {
		r, err := rd.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return tx, err
		}
		if !once(r) {
			continue
		}
		r.Auth = sp.cuts.auth(zone, r.Name, r.Type)
		sp.sign.order(zone, &r, sp.secure[r.Name])
		if cut != nil && r.Type == "SOA" {
			r.Disabled = true
		}
		rows = append(rows, r)
		size += r.size()
		between(zone, r.Name, func(n string) {
			if !seen[n] {
				seen[n] = true
				ent := row{Name: n, Auth: sp.cuts.auth(zone, n, "")}
				sp.sign.order(zone, &ent, false)
				ents = append(ents, ent)
			}
		})
		if len(rows) >= batch || size >= maxBatchBytes {
			if err := flush(false); err != nil {
				return tx, err
			}
		}
	}
	if len(rows) > 0 {
		if err := flush(true); err != nil {
			return tx, err
		}
	}
	return tx, nil
}

// missingENTs returns the candidates that have no row of their own among rows.
func missingENTs(rows, candidates []row) []row {
	have := make(map[string]bool, len(rows))
	for _, r := range rows {
		have[r.Name] = true
	}
	var out []row
	for _, c := range candidates {
		if !have[c.Name] {
			out = append(out, c)
		}
	}
	return out
}

// inTx runs fn in a transaction and commits it, or rolls back if fn fails.
func (b *Backend) inTx(ctx context.Context, fn func(storeTx) error) error {
	tx, err := b.store.begin(ctx)
	if err != nil {
		return err
	}
	err = fn(tx)
	if err != nil {
		tx.rollback() //nolint:errcheck // the connection may be gone; fn's error says why
	} else {
		err = tx.commit()
	}
	if f, ok := tx.(interface{ failed(context.Context, error) }); ok && err != nil {
		f.failed(ctx, err)
	}
	return err
}

func (b *Backend) lookupErr(op, zone string, err error) error {
	if errors.Is(err, errNoDomain) {
		err = backend.ErrNotFound
	}
	return fmt.Errorf("powerdns backend: %s %s: %w", op, zone, err)
}

func (b *Backend) notOwned(op, zone string, d domain) error {
	return fmt.Errorf("powerdns backend: %s %s: %w", op, zone, b.heldBy(d))
}

// heldBy says that d is another account's.
func (b *Backend) heldBy(d domain) error {
	return fmt.Errorf("the PowerDNS database holds this zone with account %q, not the agent's %q: %w",
		d.Account, b.account, backend.ErrNotOwned)
}

// rowZone validates a zone name and returns it in row form.
func rowZone(op, zone string) (string, error) {
	name, err := backend.CheckZone("powerdns", op, zone)
	return strings.TrimSuffix(name, "."), err
}

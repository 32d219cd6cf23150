package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Staged loads. Galera refuses a transaction whose write set exceeds wsrep_max_ws_rows
// rows or wsrep_max_ws_size bytes, and a full replace deletes every old row and inserts
// every new one in one transaction. When the server's limits would be exceeded, the new
// version is written under a domains row of its own with a name no resolver asks for
// (".invalid", RFC 6761 §6.4), in as many transactions as needed; one small transaction
// then renames the old domains row away and the new one to the zone's name, and moves
// the zone's domainmetadata, cryptokeys and comments to it. PowerDNS reads records by
// domain_id, and finds a zone's domain_id by its domains.name (zone cache) or, with
// zone-cache-refresh-interval=0, by the records row of the zone's SOA (the last of several
// it reads). So the staged version's SOA row is written disabled and enabled by the switch:
// until then no reader finds the half-written version; after it, a reader without the
// zone cache finds the new SOA (the higher id, read last) and one with it keeps the old
// domain_id until pdns_control rediscovers, each seeing the old complete version or the
// new complete one on every node. The old version's rows are deleted in chunks
// afterwards, its SOA first.

// stagingSuffix ends the names of domains rows holding a version being staged or retired.
const stagingSuffix = ".dnsagent.invalid"

// wsLimits are the server's write-set limits; 0 is no limit.
type wsLimits struct{ rows, bytes int64 }

// limits reads the write-set limits; a server without Galera (no wsrep_on, or off) has none.
func limits(ctx context.Context, conn interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (wsLimits, error) {
	var on, rows, size sql.NullInt64
	err := conn.QueryRowContext(ctx, `SELECT @@wsrep_on, @@wsrep_max_ws_rows, @@wsrep_max_ws_size`).Scan(&on, &rows, &size)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1193 { // ER_UNKNOWN_SYSTEM_VARIABLE: not MariaDB/Galera
		return wsLimits{}, nil
	}
	if err != nil || on.Int64 == 0 {
		return wsLimits{}, err
	}
	return wsLimits{rows: rows.Int64, bytes: size.Int64}, nil
}

// rowOverhead is added to a row's data for its size in the write set (keys, ids, flags).
const rowOverhead = 100

// plan returns how many rows one transaction may write, or 0 when the whole load fits
// in one transaction: within half of each limit, the other half being the margin for
// empty non-terminals and for the estimate.
func (l wsLimits) plan(oldRows, newRows int, newBytes int64) int {
	per := int64(rowOverhead)
	if newRows > 0 {
		per += newBytes / int64(newRows)
	}
	total := int64(oldRows + newRows)
	if (l.rows == 0 || total <= l.rows/2) && (l.bytes == 0 || total*per <= l.bytes/2) {
		return 0
	}
	chunk := int64(50000)
	if l.rows > 0 {
		chunk = min(chunk, l.rows/4)
	}
	if l.bytes > 0 {
		chunk = min(chunk, l.bytes/4/per)
	}
	return int(max(chunk, 1))
}

// loadZone writes the spooled zone in one transaction (load), or staged in several when
// that one would exceed the server's write-set limits; it reports which.
func (b *Backend) loadZone(ctx context.Context, name string, sp *spool, mode loadMode) (bool, error) {
	s, ok := b.store.(*sqlStore)
	if !ok {
		return false, b.load(ctx, name, sp, mode)
	}
	db, node := s.nodes.pick(ctx)
	if lim, ok := s.limits.get(node); ok && (lim == wsLimits{} || mode == mustCreate && lim.plan(0, sp.rows, sp.buf.size) == 0) {
		// Known to fit in one transaction: a create replaces no rows.
		err := b.load(ctx, name, sp, mode)
		if err != nil {
			s.limits.forget(node)
		}
		return false, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		s.nodes.failed(ctx, node, err)
		return false, err
	}
	defer conn.Close()
	chunk, err := b.chunk(ctx, s, conn, node, name, sp)
	if err == nil && chunk == 0 {
		conn.Close()
		return false, b.load(ctx, name, sp, mode)
	}
	if err == nil {
		err = b.stagedLoad(ctx, s, conn, node, name, sp, mode, chunk)
	}
	if err != nil {
		s.nodes.failed(ctx, node, err)
	}
	return true, err
}

// chunk returns the rows per transaction of a staged load, 0 for a load in one.
func (b *Backend) chunk(ctx context.Context, s *sqlStore, conn *sql.Conn, node int, name string, sp *spool) (int, error) {
	lim, err := limits(ctx, conn)
	if err != nil {
		return 0, err
	}
	s.limits.set(node, lim)
	if lim == (wsLimits{}) {
		return 0, nil
	}
	var old int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM records r JOIN domains d ON d.id = r.domain_id WHERE d.name = ?`,
		name).Scan(&old); err != nil {
		return 0, err
	}
	return lim.plan(old, sp.rows, sp.buf.size), nil
}

// limitsFresh is how long a node's write-set limits, once read, are taken as they were.
// Read for every load, they cost a connection of the load's own and a statement: 8% of
// the agent's CPU when creating small zones at 450 a second (bench/README.md, many
// zones). A limit lowered meanwhile (SET GLOBAL) fails a load that no longer fits (1180,
// "wsrep_max_ws_rows exceeded"); that load is retried (retry.go), and its failure made
// the retry read the limits again.
const limitsFresh = 10 * time.Second

// limitCache holds each node's limits and when they were read.
type limitCache struct {
	mu   sync.Mutex
	node map[int]readLimits
}

type readLimits struct {
	wsLimits
	at time.Time
}

func (c *limitCache) get(node int) (wsLimits, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.node[node]
	if !ok || time.Since(r.at) >= limitsFresh {
		return wsLimits{}, false
	}
	return r.wsLimits, true
}

func (c *limitCache) set(node int, lim wsLimits) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.node == nil {
		c.node = map[int]readLimits{}
	}
	c.node[node] = readLimits{lim, time.Now()}
}

func (c *limitCache) forget(node int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.node, node)
}

// stagingTag names the staged and retired versions of one zone (its changes are never
// run at once, other zones' are).
func stagingTag(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("%016x", h.Sum64())
}

func (b *Backend) stagedLoad(ctx context.Context, s *sqlStore, conn *sql.Conn, node int, name string, sp *spool, mode loadMode, chunk int) error {
	tag := stagingTag(name)
	begin := func() (*sqlTx, error) {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return &sqlTx{tx: tx, store: s, node: node}, nil
	}
	run := func(fn func(*sqlTx) error) error {
		tx, err := begin()
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.rollback() //nolint:errcheck
			return err
		}
		return tx.commit()
	}
	// What a failed earlier attempt left behind.
	if err := b.dropVersions(ctx, conn, tag, "%", chunk); err != nil {
		return err
	}
	var id int64
	if err := run(func(tx *sqlTx) (err error) {
		id, err = tx.createDomain(ctx, "staging-"+tag+stagingSuffix, b.kind, b.account)
		return err
	}); err != nil {
		return err
	}
	tx, err := begin()
	if err != nil {
		return err
	}
	batch := min(b.batch, chunk)
	written := 0
	last, err := b.insertSpool(ctx, tx, id, name, sp, batch, func(cur storeTx, n int) (storeTx, error) {
		if written += n; written+2*batch <= chunk {
			return cur, nil
		}
		t := cur.(*sqlTx)
		if err := t.commit(); err != nil {
			return cur, err
		}
		next, err := begin()
		if err != nil {
			return cur, err
		}
		next.entTable, written = t.entTable, 0 // the candidates' table lives on the connection
		return next, nil
	})
	if err == nil {
		err = last.commit()
	} else {
		last.rollback() //nolint:errcheck
	}
	if err != nil {
		return err
	}
	// The empty non-terminals, chunk by chunk: each round adds those still missing.
	ents := last.(*sqlTx).entTable
	for ents {
		var n int64
		if err := run(func(tx *sqlTx) (err error) {
			res, err := tx.tx.ExecContext(ctx,
				`INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, ordername, auth)
				 SELECT ?, e.name, NULL, NULL, NULL, NULL, 0, e.ordername, e.auth FROM dnsagent_ent e
				 WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.domain_id = ? AND r.name = e.name) LIMIT ?`, id, id, chunk)
			if err == nil {
				n, err = res.RowsAffected()
			}
			return err
		}); err != nil {
			return fmt.Errorf("inserting empty non-terminals: %w", err)
		}
		ents = n >= int64(chunk)
	}
	if _, err := conn.ExecContext(ctx, `DROP TEMPORARY TABLE IF EXISTS dnsagent_ent`); err != nil {
		return err
	}
	// The switch: one small transaction.
	return run(func(tx *sqlTx) error {
		d, exists, err := b.loadTarget(ctx, tx, name, mode)
		if err != nil {
			return err
		}
		if exists {
			if _, err := tx.tx.ExecContext(ctx, `UPDATE domains SET name = CONCAT('retired-', ?, '-', id, ?) WHERE id = ?`,
				tag, stagingSuffix, d.ID); err != nil {
				return err
			}
			if _, err := tx.tx.ExecContext(ctx, `UPDATE domains n JOIN domains o ON o.id = ?
				SET n.master = o.master, n.last_check = o.last_check, n.notified_serial = o.notified_serial,
				    n.options = o.options, n.catalog = o.catalog WHERE n.id = ?`, d.ID, id); err != nil {
				return err
			}
			for _, table := range []string{"domainmetadata", "cryptokeys", "comments"} {
				if _, err := tx.tx.ExecContext(ctx, `UPDATE `+table+` SET domain_id = ? WHERE domain_id = ?`, id, d.ID); err != nil {
					return err
				}
			}
		}
		if _, err := tx.tx.ExecContext(ctx, `UPDATE domains SET name = ? WHERE id = ?`, name, id); err != nil {
			return err
		}
		if _, err := tx.tx.ExecContext(ctx, `UPDATE records SET disabled = 0 WHERE domain_id = ? AND name = ? AND type = 'SOA'`,
			id, name); err != nil {
			return err
		}
		return tx.setSigning(ctx, id, sp.sign)
	})
}

// dropRetired deletes the zone's retired version after a staged load, retried like any
// transaction (the cluster may still be regrouping after a node left); a failure still
// standing leaves it to the next staged load of the zone.
func (b *Backend) dropRetired(ctx context.Context, name string) { b.dropLeft(ctx, name, "retired") }

// dropLeft deletes the zone's versions of kind ("retired", or "%" for any) as dropRetired
// does.
func (b *Backend) dropLeft(ctx context.Context, name, kind string) {
	s, ok := b.store.(*sqlStore)
	if !ok {
		return
	}
	b.retry.do(ctx, func(int) error { //nolint:errcheck // best effort, see above
		db, node := s.nodes.pick(ctx)
		conn, err := db.Conn(ctx)
		if err != nil {
			s.nodes.failed(ctx, node, err)
			return err
		}
		defer conn.Close()
		chunk := 10000
		if lim, err := limits(ctx, conn); err == nil && lim.rows > 0 {
			chunk = int(max(1, min(int64(chunk), lim.rows/4)))
		}
		if err := b.dropVersions(ctx, conn, stagingTag(name), kind, chunk); err != nil {
			s.nodes.failed(ctx, node, err)
			return err
		}
		return nil
	})
}

// dropVersions deletes the agent's domains rows named KIND-TAG...stagingSuffix (kind "%"
// for every kind) with their rows, chunk rows per transaction.
func (b *Backend) dropVersions(ctx context.Context, conn *sql.Conn, tag, kind string, chunk int) error {
	rows, err := conn.QueryContext(ctx, `SELECT id FROM domains WHERE BINARY account = ? AND name LIKE ?`,
		b.account, kind+"-"+tag+"%"+stagingSuffix)
	if err != nil {
		return err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, id := range ids {
		// No reader without the zone cache may pick the version while it shrinks.
		if _, err := conn.ExecContext(ctx, `DELETE FROM records WHERE domain_id = ? AND type = 'SOA'`, id); err != nil {
			return err
		}
		for {
			res, err := conn.ExecContext(ctx, `DELETE FROM records WHERE domain_id = ? LIMIT ?`, id, chunk)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n < int64(chunk) {
				if err != nil {
					return err
				}
				break
			}
		}
		for _, table := range []string{"comments", "domainmetadata", "cryptokeys"} {
			if _, err := conn.ExecContext(ctx, `DELETE FROM `+table+` WHERE domain_id = ?`, id); err != nil {
				return err
			}
		}
		if _, err := conn.ExecContext(ctx, `DELETE FROM domains WHERE id = ?`, id); err != nil {
			return err
		}
	}
	return nil
}

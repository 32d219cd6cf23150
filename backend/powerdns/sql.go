package powerdns

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
)

// sqlStore is the store on PowerDNS 4.7's schema.mysql.sql. It adds a temporary table of
// its own (per connection, for ENT candidates) and, with name_index, one virtual column
// and its index to records (see prepare), so the agent's database user needs SELECT,
// INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, and ALTER and INDEX for name_index.
type sqlStore struct {
	nodes  *nodes
	limits limitCache // the nodes' write-set limits (stage.go)
	// nameIndex: use (and create when missing) the index of reversed names.
	nameIndex bool
	// index: 0 not checked yet, indexReady, or indexRefused (the server said no: not
	// asked again until the agent restarts).
	index atomic.Int32
}

const (
	indexReady   = 1
	indexRefused = 2
)

// readCommitted makes every connection's transactions READ COMMITTED, as PowerDNS's own
// are (gmysql-innodb-read-committed): without gap locks, creating two zones at once
// cannot deadlock on the domains name index. Set once per connection: database/sql's
// per-transaction isolation costs a SET TRANSACTION round trip before every BEGIN.
type readCommitted struct{ driver.Connector }

func (c readCommitted) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("the database driver cannot run statements on a new connection")
	}
	if _, err := ex.ExecContext(ctx, `SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (s *sqlStore) begin(ctx context.Context) (storeTx, error) {
	db, node := s.nodes.pick(ctx)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		s.nodes.failed(ctx, node, err)
		return nil, err
	}
	return &sqlTx{tx: tx, store: s, node: node, nameIndex: s.nameIndex && s.index.Load() == indexReady}, nil
}

// use runs fn on the current node; an error of the node makes another one current.
func (s *sqlStore) use(ctx context.Context, fn func(db *sql.DB) error) error {
	db, node := s.nodes.pick(ctx)
	err := fn(db)
	if err != nil {
		s.nodes.failed(ctx, node, err)
	}
	return err
}

// prepare creates the name index when it is missing: a virtual column holding each row's
// parent name (the owner without its first label), indexed with domain_id. "Is there
// anything below X" is then one probe for a child of X instead of a scan of the zone's
// rows for name LIKE '%.X'. Full loads pay for it: one more index entry per inserted
// row (about a third more MariaDB CPU for a bulk insert, measured; an index of reversed
// names, REVERSE(name) LIKE 'X.%', cost the same). The expression strips the first label up to its first unescaped dot (PowerDNS writes a
// dot inside a label as "\."); CHAR(92) is the backslash, so the definition means the
// same whatever sql_mode says about backslashes in literals. The column is VIRTUAL: its
// value lives in the index only, and PowerDNS's gmysql queries, which name their
// columns, neither see nor fill it. ADD ... IF NOT EXISTS makes two agents starting at
// once harmless (ALTERs serialize; the second finds it done). A failure leaves the store
// on the scan.
func (s *sqlStore) prepare(ctx context.Context) error {
	if !s.nameIndex || s.index.Load() != 0 {
		return nil
	}
	err := s.use(ctx, func(db *sql.DB) error {
		var n int
		err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'records' AND INDEX_NAME = 'dnsagent_parent'`).Scan(&n)
		if err != nil || n > 0 {
			return err
		}
		_, err = db.ExecContext(ctx, `ALTER TABLE records
			ADD COLUMN IF NOT EXISTS dnsagent_parent VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_bin
				AS (REGEXP_REPLACE(name, CONCAT('^(?:[^.', CHAR(92, 92), ']|', CHAR(92, 92), '.)*[.]'), '')) VIRTUAL,
			ADD INDEX IF NOT EXISTS dnsagent_parent (domain_id, dnsagent_parent)`)
		return err
	})
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			s.index.Store(indexRefused)
		}
		return fmt.Errorf("powerdns backend: name_index: creating column and index dnsagent_parent on records failed "+
			"(changes then scan the zone's rows to find empty non-terminals; grant ALTER and INDEX, or set name_index = false): %w", err)
	}
	s.index.Store(indexReady)
	return nil
}

func (s *sqlStore) lookup(ctx context.Context, zone string) (domain, string, error) {
	var d domain
	var soa sql.NullString
	err := s.use(ctx, func(db *sql.DB) error {
		err := db.QueryRowContext(ctx,
			`SELECT d.id, COALESCE(d.account, ''), r.content FROM domains d
			 LEFT JOIN records r ON r.domain_id = d.id AND r.name = d.name AND r.type = 'SOA'
			 WHERE d.name = ? LIMIT 1`, zone).Scan(&d.ID, &d.Account, &soa)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoDomain
		}
		return err
	})
	if err != nil {
		return domain{}, "", err
	}
	return d, soa.String, nil
}

func (s *sqlStore) zones(ctx context.Context, account string) ([]string, error) {
	// BINARY: domains.account compares case-insensitively, ownership must not.
	// Not the versions of a zone being staged or retired (stage.go).
	var names []string
	err := s.use(ctx, func(db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT name FROM domains WHERE BINARY account = ? AND name NOT LIKE '%`+stagingSuffix+`' ORDER BY name`, account)
		if err != nil {
			return err
		}
		names, err = scanNames(rows, nil)
		return err
	})
	return names, err
}

// ping checks the current node, and that it is ready.
func (s *sqlStore) ping(ctx context.Context) error {
	return s.use(ctx, func(db *sql.DB) error { return ready(ctx, db) })
}

func (s *sqlStore) close() error { return s.nodes.close() }

type sqlTx struct {
	tx        *sql.Tx
	store     *sqlStore
	node      int  // index in store.nodes
	nameIndex bool // records.dnsagent_parent exists
	// entTable: the ENT candidate table was (re)created in this transaction. Temporary
	// tables outlive a rollback on a pooled connection, so each transaction starts its
	// own.
	entTable bool
}

func (t *sqlTx) commit() error   { return t.tx.Commit() }
func (t *sqlTx) rollback() error { return t.tx.Rollback() }

// failed reports the error that ended the transaction (Backend.inTx).
func (t *sqlTx) failed(ctx context.Context, err error) { t.store.nodes.failed(ctx, t.node, err) }

func (t *sqlTx) domain(ctx context.Context, zone string) (domain, error) {
	var d domain
	err := t.tx.QueryRowContext(ctx,
		`SELECT id, COALESCE(account, '') FROM domains WHERE name = ? FOR UPDATE`, zone).Scan(&d.ID, &d.Account)
	if errors.Is(err, sql.ErrNoRows) {
		return domain{}, errNoDomain
	}
	return d, err
}

func (t *sqlTx) createDomain(ctx context.Context, zone, kind, account string) (int64, error) {
	res, err := t.tx.ExecContext(ctx, `INSERT INTO domains (name, type, account) VALUES (?, ?, ?)`, zone, kind, account)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 { // ER_DUP_ENTRY on name_index
		return 0, fmt.Errorf("the zone was created meanwhile by someone else: %w: %w", errDomainExists, err)
	}
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (t *sqlTx) setKind(ctx context.Context, id int64, kind string) error {
	_, err := t.tx.ExecContext(ctx, `UPDATE domains SET type = ? WHERE id = ?`, kind, id)
	return err
}

func (t *sqlTx) deleteDomain(ctx context.Context, id int64, name string) (bool, error) {
	// A version an interrupted staged load left keeps an SOA row named for the zone (a
	// dropRetired that failed): a resolver without the zone cache would find the zone by
	// it after the delete, served from that old version.
	tag := stagingTag(name)
	res, err := t.tx.ExecContext(ctx, `DELETE r FROM records r JOIN domains d ON d.id = r.domain_id
		WHERE (d.name LIKE ? OR d.name = ?) AND r.type = 'SOA'`, "retired-"+tag+"-%"+stagingSuffix, "staging-"+tag+stagingSuffix)
	if err != nil {
		return false, fmt.Errorf("deleting the SOA rows of left versions: %w", err)
	}
	left, _ := res.RowsAffected()
	big, err := t.exceedsLimits(ctx, id)
	if err != nil {
		return false, err
	}
	if big { // Galera would refuse the write set: retire now, delete the rows in chunks after
		if _, err := t.tx.ExecContext(ctx, `UPDATE domains SET name = CONCAT('retired-', ?, '-', id, ?) WHERE id = ?`,
			tag, stagingSuffix, id); err != nil {
			return false, err
		}
		_, err := t.tx.ExecContext(ctx, `DELETE FROM records WHERE domain_id = ? AND type = 'SOA'`, id)
		return true, err
	}
	for _, table := range []string{"records", "comments", "domainmetadata", "cryptokeys"} {
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE domain_id = ?`, id); err != nil {
			return false, fmt.Errorf("deleting from %s: %w", table, err)
		}
	}
	_, err = t.tx.ExecContext(ctx, `DELETE FROM domains WHERE id = ?`, id)
	return left > 0, err
}

// exceedsLimits tells whether deleting the domain's rows in this transaction would exceed
// the node's write-set limits (wsrep_max_ws_rows, wsrep_max_ws_size), as read lately.
func (t *sqlTx) exceedsLimits(ctx context.Context, id int64) (bool, error) {
	lim, ok := t.store.limits.get(t.node)
	if !ok {
		var err error
		if lim, err = limits(ctx, t.tx); err != nil {
			return false, err
		}
		t.store.limits.set(t.node, lim)
	}
	if lim == (wsLimits{}) {
		return false, nil
	}
	var rows int
	if err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE domain_id = ?`, id).Scan(&rows); err != nil {
		return false, err
	}
	return lim.plan(rows, 0, 0) != 0, nil
}

func (t *sqlTx) clearRecords(ctx context.Context, id int64) error {
	_, err := t.tx.ExecContext(ctx, `DELETE FROM records WHERE domain_id = ?`, id)
	return err
}

// insertRecords writes rows with one multi-row INSERT. ordername is NULL unless the row
// has one (a presigned zone, dnssec.go; with dnssec on, rectify-zone fills it for live
// signing), and an ENT row has NULL type, content, ttl and prio, as PowerDNS's own
// insert-empty-non-terminal-order-query writes it.
func (t *sqlTx) insertRecords(ctx context.Context, id int64, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, ordername, auth) VALUES `)
	args := make([]any, 0, len(rows)*9)
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		var order any
		if r.Ordered {
			order = r.Order
		}
		if r.Type == "" {
			args = append(args, id, r.Name, nil, nil, nil, nil, false, order, r.Auth)
		} else {
			args = append(args, id, r.Name, r.Type, r.Content, r.TTL, r.Prio, r.Disabled, order, r.Auth)
		}
	}
	_, err := t.tx.ExecContext(ctx, q.String(), args...)
	return err
}

func (t *sqlTx) deleteIDs(ctx context.Context, id int64, ids []int64) error {
	return t.byIDs(ctx, `DELETE FROM records WHERE domain_id = ? AND id IN `, []any{id}, ids)
}

func (t *sqlTx) setAuthIDs(ctx context.Context, id int64, ids []int64, auth bool) error {
	return t.byIDs(ctx, `UPDATE records SET auth = ? WHERE domain_id = ? AND id IN `, []any{auth, id}, ids)
}

// byIDs runs stmt, which ends in "id IN ", for the ids, 1000 at a time.
func (t *sqlTx) byIDs(ctx context.Context, stmt string, args []any, ids []int64) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 1000)]
		ids = ids[len(chunk):]
		a := slices.Clone(args)
		for _, n := range chunk {
			a = append(a, n)
		}
		if _, err := t.tx.ExecContext(ctx, stmt+`(?`+strings.Repeat(", ?", len(chunk)-1)+`)`, a...); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqlTx) addENTCandidates(ctx context.Context, rows []row) error {
	if !t.entTable {
		for _, stmt := range []string{
			`DROP TEMPORARY TABLE IF EXISTS dnsagent_ent`,
			// latin1 like records.name, so the join below compares (and uses the index)
			// without a collation conversion.
			`CREATE TEMPORARY TABLE dnsagent_ent (name VARCHAR(255) NOT NULL PRIMARY KEY, auth TINYINT(1) NOT NULL, ordername VARCHAR(255) BINARY NULL) CHARACTER SET latin1`,
		} {
			if _, err := t.tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("ENT candidates: %w", err)
			}
		}
		t.entTable = true
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO dnsagent_ent (name, auth, ordername) VALUES `)
	args := make([]any, 0, 3*len(rows))
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?, ?)`)
		var order any
		if r.Ordered {
			order = r.Order
		}
		args = append(args, r.Name, r.Auth, order)
	}
	q.WriteString(` ON DUPLICATE KEY UPDATE name = name`)
	_, err := t.tx.ExecContext(ctx, q.String(), args...)
	return err
}

func (t *sqlTx) insertMissingENTs(ctx context.Context, id int64) error {
	if !t.entTable {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx,
		`INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, ordername, auth)
		 SELECT ?, e.name, NULL, NULL, NULL, NULL, 0, e.ordername, e.auth FROM dnsagent_ent e
		 WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.domain_id = ? AND r.name = e.name)`, id, id); err != nil {
		return fmt.Errorf("inserting empty non-terminals: %w", err)
	}
	_, err := t.tx.ExecContext(ctx, `DROP TEMPORARY TABLE dnsagent_ent`)
	t.entTable = false
	return err
}

func (t *sqlTx) rowsAt(ctx context.Context, id int64, names []string) ([]row, error) {
	var out []row
	for len(names) > 0 {
		chunk := names[:min(len(names), 500)]
		names = names[len(chunk):]
		args := []any{id}
		for _, n := range chunk {
			args = append(args, n)
		}
		rows, err := t.tx.QueryContext(ctx,
			rowColumns+` FROM records WHERE domain_id = ? AND name IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		if out, err = scanRows(rows, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// rowColumns are the columns scanRows reads.
const rowColumns = `SELECT id, name, COALESCE(type, ''), COALESCE(content, ''), COALESCE(ttl, 0), COALESCE(prio, 0), auth,
	COALESCE(disabled, 0), ordername`

func scanRows(rows *sql.Rows, out []row) ([]row, error) {
	defer rows.Close()
	for rows.Next() {
		var r row
		var order sql.NullString
		if err := rows.Scan(&r.ID, &r.Name, &r.Type, &r.Content, &r.TTL, &r.Prio, &r.Auth, &r.Disabled, &order); err != nil {
			return nil, err
		}
		r.Order, r.Ordered = order.String, order.Valid
		out = append(out, r)
	}
	return out, rows.Err()
}

func (t *sqlTx) zoneRows(ctx context.Context, id int64) ([]row, error) {
	rows, err := t.tx.QueryContext(ctx, rowColumns+` FROM records WHERE domain_id = ?`, id)
	if err != nil {
		return nil, err
	}
	return scanRows(rows, nil)
}

func (t *sqlTx) signing(ctx context.Context, id int64) (signing, error) {
	rows, err := t.tx.QueryContext(ctx,
		`SELECT kind, COALESCE(content, '') FROM domainmetadata WHERE domain_id = ? AND kind IN ('PRESIGNED', 'NSEC3PARAM')`, id)
	if err != nil {
		return signing{}, err
	}
	defer rows.Close()
	var s signing
	for rows.Next() {
		var kind, content string
		if err := rows.Scan(&kind, &content); err != nil {
			return signing{}, err
		}
		switch kind {
		case "PRESIGNED":
			s.presigned = content == "1"
		case "NSEC3PARAM":
			if p, ok := parseNSEC3PARAM(content); ok {
				s.nsec3, s.optOut = p, p.Flags&1 == 1
				p.Flags = 0
			}
		}
	}
	if !s.presigned {
		return signing{}, rows.Err()
	}
	return s, rows.Err()
}

func (t *sqlTx) setSigning(ctx context.Context, id int64, s signing) error {
	if !s.presigned {
		var n int
		if err := t.tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM domainmetadata WHERE domain_id = ? AND kind = 'PRESIGNED'`, id).Scan(&n); err != nil || n == 0 {
			return err
		}
	}
	if _, err := t.tx.ExecContext(ctx,
		`DELETE FROM domainmetadata WHERE domain_id = ? AND kind IN ('PRESIGNED', 'NSEC3PARAM')`, id); err != nil {
		return err
	}
	if !s.presigned {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx,
		`INSERT INTO domainmetadata (domain_id, kind, content) VALUES (?, 'PRESIGNED', '1')`, id); err != nil {
		return err
	}
	if s.nsec3 == nil {
		return nil
	}
	_, err := t.tx.ExecContext(ctx,
		`INSERT INTO domainmetadata (domain_id, kind, content) VALUES (?, 'NSEC3PARAM', ?)`, id, s.metaNSEC3PARAM())
	return err
}

func (t *sqlTx) setOrder(ctx context.Context, id int64, order map[int64]*string) error {
	ids := make([]int64, 0, len(order))
	for n := range order {
		ids = append(ids, n)
	}
	slices.Sort(ids)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		var q strings.Builder
		q.WriteString(`UPDATE records SET ordername = CASE id`)
		var args, in []any
		for _, n := range chunk {
			q.WriteString(` WHEN ? THEN ?`)
			var v any
			if p := order[n]; p != nil {
				v = *p
			}
			args = append(args, n, v)
			in = append(in, n)
		}
		q.WriteString(` END WHERE domain_id = ? AND id IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`)
		args = append(append(args, id), in...)
		if _, err := t.tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// below returns the distinct names strictly below name holding a row of the given kind:
// with the name index level by level, from parents to children; without it with LIKE
// '%.name' (a scan of the zone's rows), isBelow then dropping the rare false match (an
// escaped dot in a label).
func (t *sqlTx) below(ctx context.Context, id int64, name, kind string) ([]string, error) {
	if t.nameIndex {
		names, err := t.belowIndexed(ctx, id, name, kind)
		return names, t.indexGone(err)
	}
	rows, err := t.tx.QueryContext(ctx,
		`SELECT DISTINCT name FROM records WHERE domain_id = ? AND name LIKE ? AND `+kind, id, "%."+likeEscape(name))
	if err != nil {
		return nil, err
	}
	return scanNames(rows, func(n string) bool { return isBelow(n, name) })
}

func (t *sqlTx) belowIndexed(ctx context.Context, id int64, name, kind string) ([]string, error) {
	var out []string
	for level := []string{name}; len(level) > 0; {
		next := map[string]bool{}
		for len(level) > 0 {
			chunk := level[:min(len(level), 500)]
			level = level[len(chunk):]
			args := []any{id}
			for _, n := range chunk {
				args = append(args, n)
			}
			rows, err := t.tx.QueryContext(ctx, `SELECT name, MAX(COALESCE(`+kind+`, FALSE)) FROM records WHERE domain_id = ? AND dnsagent_parent IN (?`+
				strings.Repeat(", ?", len(chunk)-1)+`) GROUP BY name`, args...)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var n string
				var match bool
				if err := rows.Scan(&n, &match); err != nil {
					rows.Close()
					return nil, err
				}
				next[n] = true
				if match {
					out = append(out, n)
				}
			}
			if err := rows.Close(); err != nil {
				return nil, err
			}
		}
		level = sortedNames(next)
	}
	sort.Strings(out)
	return out, nil
}

// dataBelow reports which of names have a record (not an ENT row) below them.
func (t *sqlTx) dataBelow(ctx context.Context, id int64, names []string) (map[string]bool, error) {
	if t.nameIndex {
		found, err := t.dataBelowIndexed(ctx, id, names)
		return found, t.indexGone(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	q := `SELECT name FROM records WHERE domain_id = ? AND type IS NOT NULL`
	args := []any{id}
	if len(names) <= maxLikes {
		likes := make([]string, len(names))
		for i, n := range names {
			likes[i] = `name LIKE ?`
			args = append(args, "%."+likeEscape(n))
		}
		q += ` AND (` + strings.Join(likes, ` OR `) + `)`
	}
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := map[string]bool{}
	for rows.Next() && len(found) < len(want) {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		for a, ok := parent(n); ok; a, ok = parent(a) {
			if want[a] {
				found[a] = true
			}
		}
	}
	return found, rows.Err()
}

// dataBelowIndexed probes, per name X, for one child row of X (a row whose parent is X),
// many names per round trip. The rows the change did not touch are right, ENT rows
// included (the backend keeps them so), so a child row means data below X; except at the
// children of X that are among names themselves, whose ENT rows may be the stale ones
// being decided. Those are left out of the probe, and X has data below when one of them
// has (children decided first). (A child of X with data, or with data found below it in
// the rows read, makes X have data below too, so X is not among names.)
func (t *sqlTx) dataBelowIndexed(ctx context.Context, id int64, names []string) (map[string]bool, error) {
	ask := map[string]bool{}
	for _, n := range names {
		ask[n] = true
	}
	kids := map[string][]string{}
	for _, n := range names {
		if p, ok := parent(n); ok && ask[p] {
			kids[p] = append(kids[p], n)
		}
	}
	child := map[string]bool{} // X has a child row outside names
	for rest := names; len(rest) > 0; {
		chunk := rest[:min(len(rest), 200)]
		rest = rest[len(chunk):]
		var q strings.Builder
		var args []any
		for i, n := range chunk {
			if i > 0 {
				q.WriteString(` UNION ALL `)
			}
			q.WriteString(`(SELECT ? FROM records WHERE domain_id = ? AND dnsagent_parent = ?`)
			args = append(args, n, id, n)
			if k := kids[n]; len(k) > 0 {
				q.WriteString(` AND name NOT IN (?` + strings.Repeat(", ?", len(k)-1) + `)`)
				for _, c := range k {
					args = append(args, c)
				}
			}
			q.WriteString(` LIMIT 1)`)
		}
		rows, err := t.tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, err
		}
		got, err := scanNames(rows, nil)
		if err != nil {
			return nil, err
		}
		for _, n := range got {
			child[n] = true
		}
	}
	found := map[string]bool{}
	var decide func(string) bool
	decide = func(n string) bool {
		if v, ok := found[n]; ok {
			return v
		}
		v := child[n]
		for _, c := range kids[n] {
			v = decide(c) || v
		}
		found[n] = v
		return v
	}
	for _, n := range names {
		decide(n)
	}
	for n, v := range found {
		if !v {
			delete(found, n)
		}
	}
	return found, nil
}

// indexGone notices that someone dropped the name index's column: the next change
// creates it again (prepare) rather than failing for good.
func (t *sqlTx) indexGone(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1054 { // ER_BAD_FIELD_ERROR
		t.store.index.Store(0)
	}
	return err
}

// maxLikes: above this many names, reading every name of the zone once is cheaper than
// evaluating the LIKE patterns on every row.
const maxLikes = 8

func (t *sqlTx) cutsBelow(ctx context.Context, id int64, name string) ([]string, error) {
	return t.below(ctx, id, name, `type = 'NS'`)
}

func (t *sqlTx) setAuthAt(ctx context.Context, id int64, name string, auth, dsAuth bool) error {
	_, err := t.tx.ExecContext(ctx,
		`UPDATE records SET auth = IF(type <=> 'DS', ?, IF(type <=> 'RRSIG', TRUE, ?)) WHERE domain_id = ? AND name = ?`, dsAuth, auth, id, name)
	return err
}

func (t *sqlTx) setAuthBelow(ctx context.Context, id int64, name string, auth bool) error {
	names, err := t.below(ctx, id, name, `TRUE`)
	if err != nil {
		return err
	}
	for len(names) > 0 {
		chunk := names[:min(len(names), 500)]
		names = names[len(chunk):]
		args := []any{auth, id}
		for _, n := range chunk {
			args = append(args, n)
		}
		if _, err := t.tx.ExecContext(ctx,
			`UPDATE records SET auth = (? OR type <=> 'RRSIG') WHERE domain_id = ? AND name IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// scanNames reads a one-column result, keeping the names keep accepts (all if nil).
func scanNames(rows *sql.Rows, keep func(string) bool) ([]string, error) {
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		if keep == nil || keep(n) {
			names = append(names, n)
		}
	}
	return names, rows.Err()
}

// likeEscape escapes LIKE's wildcards and its escape character (backslash, which
// PowerDNS's escaped names contain).
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

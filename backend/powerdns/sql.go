package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
)

// sqlStore is the store on PowerDNS 4.7's schema.mysql.sql. It adds a temporary table of
// its own (per connection, for ENT candidates) and, with name_index, one virtual column
// and its index to records (see prepare), so the agent's database user needs SELECT,
// INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, and ALTER and INDEX for name_index.
type sqlStore struct {
	db *sql.DB
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

func (s *sqlStore) begin(ctx context.Context) (storeTx, error) {
	// READ COMMITTED, as PowerDNS itself uses (gmysql-innodb-read-committed): without gap
	// locks, creating two zones at once cannot deadlock on the domains name index.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	return &sqlTx{tx: tx, store: s, nameIndex: s.nameIndex && s.index.Load() == indexReady}, nil
}

// prepare creates the name index when it is missing: a virtual column holding the owner
// name reversed, indexed with domain_id, so "is there a record below X" is a prefix range
// of the index (REVERSE(name) LIKE REVERSE('.X')%) instead of a scan of the zone's rows
// for name LIKE '%.X'. The column is VIRTUAL: its value lives in the index only, and
// PowerDNS's gmysql queries, which name their columns, neither see nor fill it. ADD ...
// IF NOT EXISTS makes two agents starting at once harmless (ALTERs serialize; the second
// finds it done). A failure leaves the store on the scan.
func (s *sqlStore) prepare(ctx context.Context) error {
	if !s.nameIndex || s.index.Load() != 0 {
		return nil
	}
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'records' AND INDEX_NAME = 'dnsagent_rname'`).Scan(&n)
	if err == nil && n == 0 {
		_, err = s.db.ExecContext(ctx, `ALTER TABLE records
			ADD COLUMN IF NOT EXISTS dnsagent_rname VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_bin AS (REVERSE(name)) VIRTUAL,
			ADD INDEX IF NOT EXISTS dnsagent_rname (domain_id, dnsagent_rname)`)
	}
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			s.index.Store(indexRefused)
		}
		return fmt.Errorf("powerdns backend: name_index: creating column and index dnsagent_rname on records failed "+
			"(changes then scan the zone's rows to find empty non-terminals; grant ALTER and INDEX, or set name_index = false): %w", err)
	}
	s.index.Store(indexReady)
	return nil
}

func (s *sqlStore) lookup(ctx context.Context, zone string) (domain, string, error) {
	var d domain
	var soa sql.NullString
	err := s.db.QueryRowContext(ctx,
		`SELECT d.id, COALESCE(d.account, ''), r.content FROM domains d
		 LEFT JOIN records r ON r.domain_id = d.id AND r.name = d.name AND r.type = 'SOA'
		 WHERE d.name = ? LIMIT 1`, zone).Scan(&d.ID, &d.Account, &soa)
	if errors.Is(err, sql.ErrNoRows) {
		return domain{}, "", errNoDomain
	}
	return d, soa.String, err
}

func (s *sqlStore) zones(ctx context.Context, account string) ([]string, error) {
	// BINARY: domains.account compares case-insensitively, ownership must not.
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM domains WHERE BINARY account = ? ORDER BY name`, account)
	if err != nil {
		return nil, err
	}
	return scanNames(rows, nil)
}

func (s *sqlStore) ping(ctx context.Context) error { return s.db.PingContext(ctx) }
func (s *sqlStore) close() error                   { return s.db.Close() }

type sqlTx struct {
	tx        *sql.Tx
	store     *sqlStore
	nameIndex bool // records.dnsagent_rname exists
	// entTable: the ENT candidate table was (re)created in this transaction. Temporary
	// tables outlive a rollback on a pooled connection, so each transaction starts its
	// own.
	entTable bool
}

func (t *sqlTx) commit() error   { return t.tx.Commit() }
func (t *sqlTx) rollback() error { return t.tx.Rollback() }

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
		return 0, fmt.Errorf("the zone was created meanwhile by someone else: %w", err)
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

func (t *sqlTx) deleteDomain(ctx context.Context, id int64) error {
	for _, table := range []string{"records", "comments", "domainmetadata", "cryptokeys"} {
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE domain_id = ?`, id); err != nil {
			return fmt.Errorf("deleting from %s: %w", table, err)
		}
	}
	_, err := t.tx.ExecContext(ctx, `DELETE FROM domains WHERE id = ?`, id)
	return err
}

func (t *sqlTx) clearRecords(ctx context.Context, id int64) error {
	_, err := t.tx.ExecContext(ctx, `DELETE FROM records WHERE domain_id = ?`, id)
	return err
}

// insertRecords writes rows with one multi-row INSERT. ordername stays NULL (dnssec off:
// PowerDNS only reads it for NSEC/NSEC3; with dnssec on, rectify-zone fills it), disabled
// 0, and an ENT row has NULL type, content, ttl and prio, as PowerDNS's own
// insert-empty-non-terminal-order-query writes it.
func (t *sqlTx) insertRecords(ctx context.Context, id int64, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, ordername, auth) VALUES `)
	args := make([]any, 0, len(rows)*7)
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, 0, NULL, ?)`)
		if r.Type == "" {
			args = append(args, id, r.Name, nil, nil, nil, nil, r.Auth)
		} else {
			args = append(args, id, r.Name, r.Type, r.Content, r.TTL, r.Prio, r.Auth)
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
			`CREATE TEMPORARY TABLE dnsagent_ent (name VARCHAR(255) NOT NULL PRIMARY KEY, auth TINYINT(1) NOT NULL) CHARACTER SET latin1`,
		} {
			if _, err := t.tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("ENT candidates: %w", err)
			}
		}
		t.entTable = true
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO dnsagent_ent (name, auth) VALUES `)
	args := make([]any, 0, 2*len(rows))
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?)`)
		args = append(args, r.Name, r.Auth)
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
		 SELECT ?, e.name, NULL, NULL, NULL, NULL, 0, NULL, e.auth FROM dnsagent_ent e
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
			`SELECT id, name, COALESCE(type, ''), COALESCE(content, ''), COALESCE(ttl, 0), COALESCE(prio, 0), auth
			 FROM records WHERE domain_id = ? AND name IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.ID, &r.Name, &r.Type, &r.Content, &r.TTL, &r.Prio, &r.Auth); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// below returns the distinct names strictly below name holding a row of the given kind.
// The name index (or, without it, LIKE '%.name', a scan of the zone's rows) narrows the
// rows to those ending in ".name"; isBelow then drops the rare false match (an escaped
// dot in a label).
func (t *sqlTx) below(ctx context.Context, id int64, name, kind string) ([]string, error) {
	cond, arg := `name LIKE ?`, "%."+likeEscape(name)
	if t.nameIndex {
		cond, arg = `dnsagent_rname LIKE ?`, likeEscape(reverse("."+name))+"%"
	}
	rows, err := t.tx.QueryContext(ctx,
		`SELECT DISTINCT name FROM records WHERE domain_id = ? AND `+cond+` AND `+kind, id, arg)
	if err != nil {
		return nil, t.indexGone(err)
	}
	return scanNames(rows, func(n string) bool { return isBelow(n, name) })
}

// dataBelow reports which of names have a record (not an ENT row) below them.
func (t *sqlTx) dataBelow(ctx context.Context, id int64, names []string) (map[string]bool, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	found := map[string]bool{}
	// mark credits a name read from the database to the wanted names above it.
	mark := func(n string) {
		for a, ok := parent(n); ok; a, ok = parent(a) {
			if want[a] {
				found[a] = true
			}
		}
	}
	if t.nameIndex {
		return found, t.indexGone(t.dataBelowIndexed(ctx, id, names, mark))
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
	for rows.Next() && len(found) < len(want) {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		mark(n)
	}
	return found, rows.Err()
}

// dataBelowIndexed asks, per name X, for one record whose reversed owner starts with the
// reversed ".X": one probe of the index each, many names per round trip. Such an owner
// ends in ".X", and is below X unless that dot is escaped ("a\.X", label "a.X"); for
// the rare X whose probe found only such an owner, every owner ending in "\.X" is read
// and checked in Go.
func (t *sqlTx) dataBelowIndexed(ctx context.Context, id int64, names []string, mark func(string)) error {
	var recheck []string
	for len(names) > 0 {
		chunk := names[:min(len(names), 200)]
		names = names[len(chunk):]
		var q strings.Builder
		var args []any
		for i, n := range chunk {
			if i > 0 {
				q.WriteString(` UNION ALL `)
			}
			q.WriteString(`(SELECT ?, name FROM records WHERE domain_id = ? AND dnsagent_rname LIKE ? AND type IS NOT NULL LIMIT 1)`)
			args = append(args, n, id, likeEscape(reverse("."+n))+"%")
		}
		rows, err := t.tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var x, n string
			if err := rows.Scan(&x, &n); err != nil {
				rows.Close()
				return err
			}
			if isBelow(n, x) {
				mark(n)
			} else {
				recheck = append(recheck, x)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	for _, x := range recheck {
		prefix := likeEscape(reverse("." + x))
		rows, err := t.tx.QueryContext(ctx,
			`(SELECT name FROM records WHERE domain_id = ? AND dnsagent_rname LIKE ? AND dnsagent_rname NOT LIKE ? AND type IS NOT NULL LIMIT 1)
			 UNION ALL (SELECT name FROM records WHERE domain_id = ? AND dnsagent_rname LIKE ? AND type IS NOT NULL)`,
			id, prefix+"%", prefix+`\\%`, id, prefix+`\\%`)
		if err != nil {
			return err
		}
		got, err := scanNames(rows, nil)
		if err != nil {
			return err
		}
		for _, n := range got {
			mark(n)
		}
	}
	return nil
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

// reverse reverses a name byte by byte, as MariaDB's REVERSE() does on latin1.
func reverse(s string) string {
	b := []byte(s)
	slices.Reverse(b)
	return string(b)
}

// maxLikes: above this many names, reading every name of the zone once is cheaper than
// evaluating the LIKE patterns on every row.
const maxLikes = 8

func (t *sqlTx) cutsBelow(ctx context.Context, id int64, name string) ([]string, error) {
	return t.below(ctx, id, name, `type = 'NS'`)
}

func (t *sqlTx) setAuthAt(ctx context.Context, id int64, name string, auth, dsAuth bool) error {
	_, err := t.tx.ExecContext(ctx,
		`UPDATE records SET auth = IF(type <=> 'DS', ?, ?) WHERE domain_id = ? AND name = ?`, dsAuth, auth, id, name)
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
			`UPDATE records SET auth = ? WHERE domain_id = ? AND name IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...); err != nil {
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

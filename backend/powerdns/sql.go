package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// sqlStore is the store on PowerDNS 4.7's schema.mysql.sql. It only adds a temporary
// table of its own (per connection, for ENT candidates), so the agent's database user
// needs SELECT, INSERT, UPDATE, DELETE and CREATE TEMPORARY TABLES.
type sqlStore struct{ db *sql.DB }

func (s *sqlStore) begin(ctx context.Context) (storeTx, error) {
	// READ COMMITTED, as PowerDNS itself uses (gmysql-innodb-read-committed): without gap
	// locks, creating two zones at once cannot deadlock on the domains name index.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	return &sqlTx{tx: tx}, nil
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
	tx *sql.Tx
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

func (t *sqlTx) deleteRecord(ctx context.Context, id int64, r row) (bool, error) {
	var res sql.Result
	var err error
	if r.Type == "" {
		res, err = t.tx.ExecContext(ctx,
			`DELETE FROM records WHERE domain_id = ? AND name = ? AND type IS NULL LIMIT 1`, id, r.Name)
	} else {
		// BINARY: content compares case-insensitively in latin1_swedish_ci, and two TXT
		// records may differ in case only.
		res, err = t.tx.ExecContext(ctx,
			`DELETE FROM records WHERE domain_id = ? AND name = ? AND type = ? AND BINARY content = ? AND prio = ? LIMIT 1`,
			id, r.Name, r.Type, r.Content, r.Prio)
	}
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
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
			`SELECT name, COALESCE(type, ''), COALESCE(content, ''), COALESCE(ttl, 0), COALESCE(prio, 0), auth
			 FROM records WHERE domain_id = ? AND name IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.Name, &r.Type, &r.Content, &r.TTL, &r.Prio, &r.Auth); err != nil {
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
// LIKE narrows the scan to the zone's rows ending in ".name"; isBelow then drops the
// rare false match (an escaped dot in a label).
func (t *sqlTx) below(ctx context.Context, id int64, name, kind string) ([]string, error) {
	rows, err := t.tx.QueryContext(ctx,
		`SELECT DISTINCT name FROM records WHERE domain_id = ? AND name LIKE ? AND `+kind, id, "%."+likeEscape(name))
	if err != nil {
		return nil, err
	}
	return scanNames(rows, func(n string) bool { return isBelow(n, name) })
}

// dataBelow reads the names of the zone's records once, narrowed by LIKE when there are
// few names to answer for, and stops as soon as every name has a descendant.
func (t *sqlTx) dataBelow(ctx context.Context, id int64, names []string) (map[string]bool, error) {
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

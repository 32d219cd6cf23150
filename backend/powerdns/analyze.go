package powerdns

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// analyzeEvery is how many creates the agent commits between two refreshes of MariaDB's
// statistics of the records table.
const analyzeEvery = 1000

// statistics keeps MariaDB's statistics of the records table fresh while the agent fills
// it. PowerDNS's zone-list query (gmysql-get-all-domains-query: every pdns_control
// rediscover, so every batch of creates, and every zone-cache refresh) joins each zone to
// its SOA row. With the statistics of a table that was small, MariaDB 10.11 joins on the
// domain_id index and reads every record of every zone; fresh ones make it use (name,
// type): 38 ms against 17 ms at 10,000 zones of 5 records (issue 15's probe), and it
// stayed on domain_id while the table grew from empty, whatever InnoDB's own automatic
// recalculation did. ANALYZE TABLE samples a few pages per index (3 ms at 50,000 rows).
type statistics struct {
	creates atomic.Int64
	running atomic.Bool
}

// created counts a committed create and, every analyzeEvery, refreshes the statistics in
// the background (one refresh at a time). Best effort: stale statistics only slow
// PowerDNS's zone list, and Sweep reports a refresh the database refuses.
func (s *statistics) created(st store) {
	if s.creates.Add(1)%analyzeEvery != 0 || !s.running.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.running.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st.analyze(ctx) //nolint:errcheck // best effort, see above
	}()
}

// refresh runs one refresh now (at start: a table the agent filled before may never have
// had its statistics refreshed).
func (s *statistics) refresh(ctx context.Context, st store) error {
	if err := st.analyze(ctx); err != nil {
		return fmt.Errorf("powerdns backend: refreshing MariaDB's statistics of records (ANALYZE TABLE, "+
			"which needs SELECT and INSERT on it) failed: PowerDNS's zone list may take its slower plan: %w", err)
	}
	return nil
}

// analyze runs ANALYZE TABLE records. MariaDB reports a failure as a row of the result
// (Msg_type "error"), not as an error of the statement.
func (s *sqlStore) analyze(ctx context.Context) error {
	return s.use(ctx, func(db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `ANALYZE TABLE records`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var problems []string
		for rows.Next() {
			var table, op, kind, text string
			if err := rows.Scan(&table, &op, &kind, &text); err != nil {
				return err
			}
			if strings.EqualFold(kind, "error") {
				problems = append(problems, text)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(problems) > 0 {
			return fmt.Errorf("ANALYZE TABLE records: %s", strings.Join(problems, "; "))
		}
		return nil
	})
}

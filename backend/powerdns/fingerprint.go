package powerdns

import (
	"context"
	"database/sql"
	"fmt"
)

// rowCounter is the part of the SQL store that counts a domain's rows; the unit tests'
// fake store has none, and a backend on it then has no fingerprint.
type rowCounter interface {
	rowCount(ctx context.Context, id int64) (int, error)
}

func (s *sqlStore) rowCount(ctx context.Context, id int64) (int, error) {
	var n int
	err := s.use(ctx, func(db *sql.DB) error {
		return db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE domain_id = ?`, id).Scan(&n)
	})
	return n, err
}

// Fingerprint implements zonediff.Fingerprinter: the number of the zone's rows, which a
// row deleted or added behind the agent's back changes (one index range count, no row
// read).
func (b *Backend) Fingerprint(ctx context.Context, zone string) (string, error) {
	name, err := rowZone("fingerprint", zone)
	if err != nil {
		return "", err
	}
	counter, ok := b.store.(rowCounter)
	if !ok {
		return "", fmt.Errorf("powerdns backend: fingerprint %s: the store cannot count rows", zone)
	}
	d, _, err := b.store.lookup(ctx, name)
	if err != nil {
		return "", b.lookupErr("fingerprint", zone, err)
	}
	n, err := counter.rowCount(ctx, d.ID)
	if err != nil {
		return "", fmt.Errorf("powerdns backend: fingerprint %s: %w", zone, err)
	}
	return fmt.Sprintf("%d rows", n), nil
}

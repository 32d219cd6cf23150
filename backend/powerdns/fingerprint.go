package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// rowCounter is the part of the SQL store that counts a domain's rows; the unit tests'
// fake store has none, and a backend on it then has no fingerprint.
type rowCounter interface {
	// rowCount returns the number of rows of the zone's domain, or errNoDomain.
	rowCount(ctx context.Context, zone string) (int, error)
}

// rowCount finds the domain and counts its rows in one statement (one index range
// count, no row read).
func (s *sqlStore) rowCount(ctx context.Context, zone string) (int, error) {
	var n int
	err := s.use(ctx, func(db *sql.DB) error {
		err := db.QueryRowContext(ctx,
			`SELECT (SELECT COUNT(*) FROM records r WHERE r.domain_id = d.id) FROM domains d WHERE d.name = ?`, zone).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoDomain
		}
		return err
	})
	return n, err
}

// ReplacesSmallZones implements zonediff.SmallZoneReplacer: a small zone's replace deletes
// and inserts its few rows in the one transaction its difference would take, so its index
// is not kept.
func (b *Backend) ReplacesSmallZones() {}

// Fingerprint implements zonediff.Fingerprinter: the number of the zone's rows, which a
// row deleted or added behind the agent's back changes.
func (b *Backend) Fingerprint(ctx context.Context, zone string) (string, error) {
	name, err := rowZone("fingerprint", zone)
	if err != nil {
		return "", err
	}
	counter, ok := b.store.(rowCounter)
	if !ok {
		return "", fmt.Errorf("powerdns backend: fingerprint %s: the store cannot count rows", zone)
	}
	n, err := counter.rowCount(ctx, name)
	if err != nil {
		return "", b.lookupErr("fingerprint", zone, err)
	}
	return fmt.Sprintf("%d rows", n), nil
}

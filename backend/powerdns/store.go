package powerdns

import (
	"context"
	"errors"
)

// store is the seam in front of the SQL: everything the backend does to the database goes
// through it, so the zone logic (ownership, retries, auth and empty non-terminals on
// incremental changes, pdns_control calls) is tested without MariaDB, and sqlStore is
// tested against a real one. Names are in row form (see pdnsName).
type store interface {
	// begin starts one transaction; every zone change is exactly one.
	begin(ctx context.Context) (storeTx, error)
	// lookup returns the zone's domain row and its SOA content ("" when it has none), or
	// errNoDomain; it does not lock.
	lookup(ctx context.Context, zone string) (domain, string, error)
	// zones lists the names of the domains whose account is account.
	zones(ctx context.Context, account string) ([]string, error)
	// prepare makes sure, once, that what speeds up incremental changes exists (the
	// name_index); when it cannot, the store works without it.
	prepare(ctx context.Context) error
	// analyze refreshes the database's statistics of the records table (analyze.go).
	analyze(ctx context.Context) error
	ping(ctx context.Context) error
	close() error
}

// errNoDomain: the domains table has no row for the name.
var errNoDomain = errors.New("no such domain")

// errDomainExists: createDomain found a domains row of that name.
var errDomainExists = errors.New("domain exists")

type domain struct {
	ID      int64
	Account string
}

// storeTx is one open transaction. After an error the caller rolls back.
type storeTx interface {
	// domain returns the zone's domain row, locked until the end of the transaction, or
	// errNoDomain.
	domain(ctx context.Context, zone string) (domain, error)
	createDomain(ctx context.Context, zone, kind, account string) (int64, error)
	setKind(ctx context.Context, id int64, kind string) error
	// deleteDomain removes the domain of zone name and its rows in records, comments,
	// domainmetadata and cryptokeys, and the SOA rows of versions a staged load of the
	// zone left (stage.go). Where one transaction would exceed the server's write-set
	// limits, it retires the domain instead: renamed away, its SOA row deleted, so no
	// reader finds the zone. left says versions remain whose rows dropVersions must delete.
	deleteDomain(ctx context.Context, id int64, name string) (left bool, err error)
	clearRecords(ctx context.Context, id int64) error
	insertRecords(ctx context.Context, id int64, rows []row) error
	// deleteIDs removes the zone's rows with these ids.
	deleteIDs(ctx context.Context, id int64, ids []int64) error

	// Empty non-terminals of a full load: candidates are collected in the database (never
	// all in Go memory), then those without any row of their own become ENT rows.
	addENTCandidates(ctx context.Context, rows []row) error
	insertMissingENTs(ctx context.Context, id int64) error

	// For incremental changes, which touch few names. rowsAt returns rows with their ids.
	rowsAt(ctx context.Context, id int64, names []string) ([]row, error)
	// dataBelow reports which of names have a record (not an ENT) somewhere below them.
	dataBelow(ctx context.Context, id int64, names []string) (map[string]bool, error)
	cutsBelow(ctx context.Context, id int64, name string) ([]string, error)
	// setAuthAt sets auth on the rows at name; DS rows keep theirs when skipDS is set.
	setAuthAt(ctx context.Context, id int64, name string, auth, skipDS bool) error
	// setAuthIDs sets auth on the zone's rows with these ids.
	setAuthIDs(ctx context.Context, id int64, ids []int64, auth bool) error
	// setAuthBelow sets auth on every row strictly below name.
	setAuthBelow(ctx context.Context, id int64, name string, auth bool) error

	commit() error
	rollback() error
}

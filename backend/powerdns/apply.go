package powerdns

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// change is a checked change set: its SOAs as rows, and its net effect
// (backend.ChangeSet.Patcher folds its steps), read again from the change set (from disk
// when it is spooled) batch by batch, so that a change of a million records is never
// held in memory, as rows or as records.
type change struct {
	zone           string // as in the change set, with its trailing dot
	from, to       uint32
	oldSOA, newSOA row
	p              *backend.Patcher
}

// Apply applies an incremental change set's net effect as row deletes and inserts in one
// transaction, so its cost follows the size of the change, not of the zone. Empty
// non-terminals and auth flags are then corrected for the names the change touched (and,
// when a delegation appeared or went, for everything below it).
func (b *Backend) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	name, err := rowZone("apply", zone)
	if err != nil {
		return err
	}
	c, err := checkChange(zone, cs)
	if err != nil {
		return fmt.Errorf("powerdns backend: apply %s: %w", zone, err)
	}
	// Without the name index a change scans the zone's rows; Sweep said why at start.
	b.store.prepare(ctx) //nolint:errcheck
	var sign signing
	err = b.retry.do(ctx, func(int) error {
		return b.inTx(ctx, func(tx storeTx) (err error) { sign, err = b.applyRows(ctx, tx, name, c); return err })
	})
	if err != nil {
		return fmt.Errorf("powerdns backend: apply %s: %w", zone, err)
	}
	if err := b.ctl.presigned(sign).afterCommit(ctx, name, false); err != nil {
		return fmt.Errorf("powerdns backend: apply %s: committed, but %w", zone, err)
	}
	return nil
}

// checkChange checks the change set's steps and folds them before any transaction: its
// errors do not depend on the database and are never retried. The records are converted
// in the transaction, batch by batch; a conversion error is not retried either. Only the
// net change must be storable: a record of a type PowerDNS cannot store that one step
// adds and a later one deletes never reaches the database.
func checkChange(zone string, cs *backend.ChangeSet) (*change, error) {
	if cs == nil || len(cs.Steps) == 0 {
		return nil, errors.New("empty change set")
	}
	for i, s := range cs.Steps {
		if s.Old == nil || s.New == nil || !strings.EqualFold(s.Old.Hdr.Name, zone) || !strings.EqualFold(s.New.Hdr.Name, zone) {
			return nil, fmt.Errorf("step %d: missing SOA or SOA of another zone", i+1)
		}
		if i > 0 && s.Old.Serial != cs.Steps[i-1].New.Serial {
			return nil, fmt.Errorf("step %d starts at serial %d, the previous one ended at %d: %w",
				i+1, s.Old.Serial, cs.Steps[i-1].New.Serial, backend.ErrInconsistent)
		}
	}
	c := &change{zone: zone, from: cs.From(), to: cs.To()}
	var err error
	if c.oldSOA, err = toRow(cs.Steps[0].Old); err != nil {
		return nil, err
	}
	if c.newSOA, err = toRow(cs.Steps[len(cs.Steps)-1].New); err != nil {
		return nil, err
	}
	c.p = cs.Patcher()
	return c, nil
}

// recordRow converts a record of a change set (not its SOA).
func recordRow(zone string, rr dns.RR) (row, error) {
	if !dns.IsSubDomain(zone, rr.Header().Name) {
		return row{}, fmt.Errorf("record %s is outside zone %s", rr, zone)
	}
	if rr.Header().Rrtype == dns.TypeSOA {
		return row{}, fmt.Errorf("SOA %s among the step's records (the step's SOAs are Old and New)", rr)
	}
	return toRow(rr)
}

// applyRows writes the change in the open transaction, in passes over the change set,
// each holding batch_size records at most: the net deletions, the additions, then the
// empty non-terminals, auth flags and ordernames at the names they touched.
func (b *Backend) applyRows(ctx context.Context, tx storeTx, zone string, c *change) (signing, error) {
	d, err := tx.domain(ctx, zone)
	if errors.Is(err, errNoDomain) {
		return signing{}, backend.ErrNotFound
	}
	if err != nil {
		return signing{}, err
	}
	if d.Account != b.account {
		return signing{}, fmt.Errorf("the zone is held with account %q: %w", d.Account, backend.ErrNotOwned)
	}
	apex, err := tx.rowsAt(ctx, d.ID, []string{zone})
	if err != nil {
		return signing{}, err
	}
	var soa []row
	for _, r := range apex {
		if r.Type == "SOA" {
			soa = append(soa, r)
		}
	}
	if err := checkSOA(soa, c); err != nil {
		return signing{}, err
	}
	delegated := false // an NS row below the apex changed
	touch := func(r row) {
		if r.Type == "NS" && r.Name != zone {
			delegated = true
		}
	}
	var batch []row
	var must []bool
	err = c.p.EachDeleted(func(rr dns.RR, ifHeld bool) error {
		r, err := recordRow(c.zone, rr)
		if err != nil && ifHeld {
			return nil
		}
		if err != nil {
			// Not a record the stored zone can hold, so not one it holds.
			return fmt.Errorf("%w: the change set deletes a record the zone cannot hold: %v", backend.ErrInconsistent, err)
		}
		touch(r)
		batch, must = append(batch, r), append(must, !ifHeld)
		if len(batch) < b.batch {
			return nil
		}
		err = b.removeRows(ctx, tx, d.ID, c, batch, must)
		batch, must = batch[:0], must[:0]
		return err
	})
	if err == nil {
		err = b.removeRows(ctx, tx, d.ID, c, batch, must)
	}
	if err != nil {
		return signing{}, err
	}
	batch, size := batch[:0], 0
	err = c.p.EachAdded(func(rr dns.RR) error {
		r, err := recordRow(c.zone, rr)
		if err != nil {
			return fmt.Errorf("serial %d would hold a record PowerDNS cannot store: %w", c.to, err)
		}
		r.Auth = true // fixAuth corrects it once the change is in
		touch(r)
		batch, size = append(batch, r), size+r.size()
		if len(batch) < b.batch && size < maxBatchBytes {
			return nil
		}
		err = b.addRows(ctx, tx, d.ID, batch)
		batch, size = batch[:0], 0
		return err
	})
	if err == nil {
		err = b.addRows(ctx, tx, d.ID, batch)
	}
	if err != nil {
		return signing{}, err
	}
	if err := tx.deleteIDs(ctx, d.ID, []int64{soa[0].ID}); err != nil {
		return signing{}, err
	}
	if err := tx.insertRecords(ctx, d.ID, []row{withAuth(c.newSOA)}); err != nil {
		return signing{}, err
	}
	return b.fixNames(ctx, tx, d.ID, zone, c, delegated)
}

// removeRows removes the rows holding the records of a batch of net deletions: every copy
// (an older version of the agent may have stored a record twice). A record the zone must
// hold and does not is ErrInconsistent.
func (b *Backend) removeRows(ctx context.Context, tx storeTx, id int64, c *change, rows []row, must []bool) error {
	byKey, err := heldRows(ctx, tx, id, rows)
	if err != nil {
		return err
	}
	var ids []int64
	for i, r := range rows {
		found := byKey[r.key()]
		if len(found) == 0 && must[i] {
			return fmt.Errorf("serial %d -> %d deletes %s %s %q, which the zone does not hold: %w",
				c.from, c.to, r.Name, r.Type, r.Content, backend.ErrInconsistent)
		}
		ids = append(ids, found...)
		delete(byKey, r.key())
	}
	return tx.deleteIDs(ctx, id, ids)
}

// addRows inserts a batch of added rows. Adding a record the zone holds already changes
// nothing in DNS but its TTL; without deleting the held row first PowerDNS would serve it
// twice. Two added records that differ only where the row form does not (owner case)
// are one row: within the batch the first is kept, across batches the later one replaces
// the row of the earlier.
func (b *Backend) addRows(ctx context.Context, tx storeTx, id int64, rows []row) error {
	byKey, err := heldRows(ctx, tx, id, rows)
	if err != nil {
		return err
	}
	var ids []int64
	seen := map[string]bool{}
	var add []row
	for _, r := range rows {
		k := r.key()
		if seen[k] {
			continue
		}
		seen[k] = true
		ids = append(ids, byKey[k]...)
		add = append(add, r)
	}
	if err := tx.deleteIDs(ctx, id, ids); err != nil {
		return err
	}
	return b.insertRows(ctx, tx, id, add)
}

// heldRows reads the rows at the owners of rows, by key, the SOA left out.
func heldRows(ctx context.Context, tx storeTx, id int64, rows []row) (map[string][]int64, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	set := map[string]bool{}
	for _, r := range rows {
		set[r.Name] = true
	}
	held, err := tx.rowsAt(ctx, id, sortedNames(set))
	if err != nil {
		return nil, err
	}
	byKey := map[string][]int64{}
	for _, r := range held {
		if r.Type != "SOA" {
			byKey[r.key()] = append(byKey[r.key()], r.ID)
		}
	}
	return byKey, nil
}

// fixNames corrects empty non-terminals, auth flags and ordernames at the names the change
// touched, batch_size names at a time (each with the names between it and the apex).
// Every fix writes what the final rows, all in by now, call for at the names it looks
// at, so the batches may come in any order: a name met in several batches is decided
// last in the last one, which also holds every touched name below it.
func (b *Backend) fixNames(ctx context.Context, tx storeTx, id int64, zone string, c *change, delegated bool) (signing, error) {
	sf, err := planSigning(ctx, tx, id, zone, delegated)
	if err != nil {
		return signing{}, err
	}
	touched, delegations := map[string]bool{}, map[string]bool{}
	flush := func() error {
		if len(touched) == 0 {
			return nil
		}
		names, err := fixENTs(ctx, tx, b, id, zone, touched)
		if err != nil {
			return err
		}
		if err := fixAuth(ctx, tx, id, zone, names, delegations); err != nil {
			return err
		}
		if err := sf.fixAt(ctx, tx, id, zone, names); err != nil {
			return err
		}
		clear(touched)
		clear(delegations)
		return nil
	}
	each := func(rr dns.RR) error {
		h := rr.Header()
		name, err := pdnsName(h.Name)
		if err != nil || !dns.IsSubDomain(c.zone, h.Name) {
			return nil // an ifHeld deletion the zone cannot hold
		}
		touched[name] = true
		if h.Rrtype == dns.TypeNS && name != zone {
			delegations[name] = true
		}
		if len(touched) < b.batch {
			return nil
		}
		return flush()
	}
	err = c.p.EachDeleted(func(rr dns.RR, _ bool) error { return each(rr) })
	if err == nil {
		err = c.p.EachAdded(each)
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return signing{}, err
	}
	return sf.now, sf.finish(ctx, tx, id, zone)
}

// checkSOA: the zone has one SOA row, the change set's first one.
func checkSOA(soa []row, c *change) error {
	if len(soa) == 0 {
		return fmt.Errorf("the zone has no SOA row: %w", backend.ErrInconsistent)
	}
	if len(soa) > 1 {
		return fmt.Errorf("the zone has %d SOA rows: %w", len(soa), backend.ErrInconsistent)
	}
	serial, err := soaSerial(soa[0].Content)
	if err != nil {
		return err
	}
	if serial != c.from {
		return fmt.Errorf("the change set starts at serial %d, the zone is at %d: %w", c.from, serial, backend.ErrInconsistent)
	}
	if soa[0].Content != c.oldSOA.Content {
		return fmt.Errorf("the stored SOA is not the change set's %s: %w", c.oldSOA.Content, backend.ErrInconsistent)
	}
	return nil
}

// insertRows writes rows in multi-row INSERTs of at most batch_size rows and maxBatchBytes.
func (b *Backend) insertRows(ctx context.Context, tx storeTx, id int64, rows []row) error {
	for len(rows) > 0 {
		n, size := 0, 0
		for n < len(rows) && n < b.batch && size < maxBatchBytes {
			size += rows[n].size()
			n++
		}
		if err := tx.insertRecords(ctx, id, rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// withAuth marks a row authoritative.
func withAuth(r row) row {
	r.Auth = true
	return r
}

// fixENTs makes the ENT rows right for the touched names and the names between them and
// the apex: a name with no record of its own needs an ENT row exactly when some record
// lies below it. It returns every name it looked at.
func fixENTs(ctx context.Context, tx storeTx, b *Backend, id int64, zone string, touched map[string]bool) ([]string, error) {
	set := map[string]bool{}
	for n := range touched {
		if n != zone {
			set[n] = true
		}
		between(zone, n, func(a string) { set[a] = true })
	}
	names := sortedNames(set)
	rows, err := tx.rowsAt(ctx, id, names)
	if err != nil {
		return nil, err
	}
	hasData, dataBelow := map[string]bool{}, map[string]bool{}
	ents := map[string][]int64{}
	for _, r := range rows {
		if r.Type == "" {
			ents[r.Name] = append(ents[r.Name], r.ID)
			continue
		}
		hasData[r.Name] = true
		between(zone, r.Name, func(a string) { dataBelow[a] = true })
	}
	// Names without records of their own whose descendants are not among the rows read:
	// the database answers for them all at once.
	var ask []string
	for _, n := range names {
		if !hasData[n] && !dataBelow[n] {
			ask = append(ask, n)
		}
	}
	if len(ask) > 0 {
		found, err := tx.dataBelow(ctx, id, ask)
		if err != nil {
			return nil, err
		}
		for n := range found {
			dataBelow[n] = true
		}
	}
	var add []row
	var del []int64
	for _, n := range names {
		need := !hasData[n] && dataBelow[n]
		switch {
		case need && len(ents[n]) == 0:
			add = append(add, row{Name: n, Auth: true})
		case need:
			del = append(del, ents[n][1:]...) // one is enough
		default:
			del = append(del, ents[n]...)
		}
	}
	if err := tx.deleteIDs(ctx, id, del); err != nil {
		return nil, err
	}
	return names, b.insertRows(ctx, tx, id, add)
}

// fixAuth sets auth on the rows at names (see cuts.auth), and on everything below a name
// that became or stopped being a delegation.
func fixAuth(ctx context.Context, tx storeTx, id int64, zone string, names []string, delegations map[string]bool) error {
	all := map[string]bool{}
	for _, n := range names {
		all[n] = true
	}
	for n := range delegations {
		all[n] = true
	}
	// The delegations that matter are at these names or above them.
	lookup := map[string]bool{}
	for n := range all {
		lookup[n] = true
		between(zone, n, func(a string) { lookup[a] = true })
	}
	rows, err := tx.rowsAt(ctx, id, sortedNames(lookup))
	if err != nil {
		return err
	}
	cut := cuts{}
	for _, r := range rows {
		if r.Type == "NS" && r.Name != zone {
			cut[r.Name] = true
		}
	}
	for _, n := range sortedNames(delegations) {
		if cut.above(zone, n) {
			continue // everything below n stays below the higher delegation
		}
		if err := tx.setAuthBelow(ctx, id, n, !cut[n]); err != nil {
			return err
		}
		if cut[n] {
			continue
		}
		// n is no delegation any more: the delegations below it apply again.
		lower, err := tx.cutsBelow(ctx, id, n)
		if err != nil {
			return err
		}
		for _, c := range lower {
			if err := tx.setAuthAt(ctx, id, c, false, true); err != nil {
				return err
			}
		}
		// After the DS rows above: a delegation below another one has no authoritative DS.
		for _, c := range lower {
			if err := tx.setAuthBelow(ctx, id, c, false); err != nil {
				return err
			}
		}
	}
	if len(delegations) > 0 {
		// The updates above changed rows read before them.
		if rows, err = tx.rowsAt(ctx, id, sortedNames(all)); err != nil {
			return err
		}
	}
	// Only the rows whose flag is wrong are written.
	flip := map[bool][]int64{}
	for _, r := range rows {
		if !all[r.Name] || r.Name == zone {
			continue
		}
		auth := r.Type == "RRSIG" || (!cut.above(zone, r.Name) && (!cut[r.Name] || r.Type == "DS"))
		if r.Auth != auth {
			flip[auth] = append(flip[auth], r.ID)
		}
	}
	for _, auth := range []bool{false, true} {
		if err := tx.setAuthIDs(ctx, id, flip[auth], auth); err != nil {
			return err
		}
	}
	return nil
}

func sortedNames(set map[string]bool) []string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

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

// change is a change set's net effect (backend.ChangeSet.Patcher folds its steps),
// converted to rows.
type change struct {
	from, to       uint32
	oldSOA, newSOA row
	deleted        []row // the zone must hold them
	ifHeld         []row // deleted if the zone holds them: an earlier step added them
	added          []row
	sign           signing // the zone's signing once the change is in
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
	c, err := convertChange(zone, cs)
	if err != nil {
		return fmt.Errorf("powerdns backend: apply %s: %w", zone, err)
	}
	// Without the name index a change scans the zone's rows; Sweep said why at start.
	b.store.prepare(ctx) //nolint:errcheck
	var sign signing
	err = b.retry.do(ctx, func(int) error {
		return b.inTx(ctx, func(tx storeTx) (err error) { sign, err = b.applyChange(ctx, tx, name, c); return err })
	})
	if err != nil {
		return fmt.Errorf("powerdns backend: apply %s: %w", zone, err)
	}
	if err := b.ctl.presigned(sign).afterCommit(ctx, name, false); err != nil {
		return fmt.Errorf("powerdns backend: apply %s: committed, but %w", zone, err)
	}
	return nil
}

// convertChange checks the change set, folds its steps and converts the net change before
// any transaction: its errors do not depend on the database and are never retried. Only
// the net change must be storable: a record of a type PowerDNS cannot store that one step
// adds and a later one deletes never reaches the database.
func convertChange(zone string, cs *backend.ChangeSet) (*change, error) {
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
	c := &change{from: cs.From(), to: cs.To()}
	var err error
	if c.oldSOA, err = toRow(cs.Steps[0].Old); err != nil {
		return nil, err
	}
	if c.newSOA, err = toRow(cs.Steps[len(cs.Steps)-1].New); err != nil {
		return nil, err
	}
	p := cs.Patcher()
	must, ifHeld, err := p.Deleted()
	if err != nil {
		return nil, err
	}
	for _, rr := range must {
		r, err := recordRow(zone, rr)
		if err != nil {
			// Not a record the stored zone can hold, so not one it holds.
			return nil, fmt.Errorf("%w: the change set deletes a record the zone cannot hold: %v", backend.ErrInconsistent, err)
		}
		c.deleted = append(c.deleted, r)
	}
	for _, rr := range ifHeld {
		if r, err := recordRow(zone, rr); err == nil {
			c.ifHeld = append(c.ifHeld, r)
		}
	}
	added, err := p.Added()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, rr := range added {
		r, err := recordRow(zone, rr)
		if err != nil {
			return nil, fmt.Errorf("serial %d would hold a record PowerDNS cannot store: %w", c.to, err)
		}
		// Two records that differ only where the row form does not (owner case) are one.
		if k := r.key(); !seen[k] {
			seen[k] = true
			r.Auth = true // fixAuth corrects it once the change is in
			c.added = append(c.added, r)
		}
	}
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

func (b *Backend) applyChange(ctx context.Context, tx storeTx, zone string, c *change) (signing, error) {
	if err := b.applyRows(ctx, tx, zone, c); err != nil {
		return signing{}, err
	}
	return c.sign, nil
}

func (b *Backend) applyRows(ctx context.Context, tx storeTx, zone string, c *change) error {
	d, err := tx.domain(ctx, zone)
	if errors.Is(err, errNoDomain) {
		return backend.ErrNotFound
	}
	if err != nil {
		return err
	}
	if d.Account != b.account {
		return fmt.Errorf("the zone is held with account %q: %w", d.Account, backend.ErrNotOwned)
	}
	// Every row the change can remove is at one of its owners: read them all at once,
	// match in Go, delete by id.
	set := map[string]bool{zone: true}
	for _, rows := range [][]row{c.deleted, c.ifHeld, c.added} {
		for _, r := range rows {
			set[r.Name] = true
		}
	}
	held, err := tx.rowsAt(ctx, d.ID, sortedNames(set))
	if err != nil {
		return err
	}
	byKey := map[string][]int64{}
	var soa []row
	for _, r := range held {
		if r.Type == "SOA" && r.Name == zone {
			soa = append(soa, r)
			continue
		}
		byKey[r.key()] = append(byKey[r.key()], r.ID)
	}
	if err := checkSOA(soa, c); err != nil {
		return err
	}
	ids := []int64{soa[0].ID}
	touched := map[string]bool{}     // owners whose rows changed
	delegations := map[string]bool{} // owners below the apex whose NS rows changed
	remove := func(r row, must bool) error {
		found := byKey[r.key()]
		if len(found) == 0 && must {
			return fmt.Errorf("serial %d -> %d deletes %s %s %q, which the zone does not hold: %w",
				c.from, c.to, r.Name, r.Type, r.Content, backend.ErrInconsistent)
		}
		// Every copy: an older version of the agent may have stored a record twice.
		ids = append(ids, found...)
		delete(byKey, r.key())
		touch(touched, delegations, zone, r)
		return nil
	}
	for _, r := range c.deleted {
		if err := remove(r, true); err != nil {
			return err
		}
	}
	for _, r := range c.ifHeld {
		remove(r, false) //nolint:errcheck // never fails when not a must
	}
	// Adding a record the zone holds already changes nothing in DNS but its TTL; without
	// the delete PowerDNS would serve it twice.
	for _, r := range c.added {
		remove(r, false) //nolint:errcheck
	}
	if err := tx.deleteIDs(ctx, d.ID, ids); err != nil {
		return err
	}
	if err := b.insertRows(ctx, tx, d.ID, append(c.added, withAuth(c.newSOA))); err != nil {
		return err
	}
	names, err := fixENTs(ctx, tx, b, d.ID, zone, touched)
	if err != nil {
		return err
	}
	if err := fixAuth(ctx, tx, d.ID, zone, names, delegations); err != nil {
		return err
	}
	c.sign, err = changeSigning(ctx, tx, d.ID, zone, names, len(delegations) > 0)
	return err
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

func touch(touched, delegations map[string]bool, zone string, r row) {
	touched[r.Name] = true
	if r.Type == "NS" && r.Name != zone {
		delegations[r.Name] = true
	}
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

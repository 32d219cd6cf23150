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

// step is a backend.Step converted to rows.
type step struct {
	oldSerial, newSerial uint32
	oldSOA, newSOA       row
	deleted, added       []row
}

// Apply applies an incremental change set as row deletes and inserts in one transaction,
// so its cost follows the size of the change, not of the zone. Empty non-terminals and
// auth flags are then corrected for the names the change touched (and, when a
// delegation appeared or went, for everything below it).
func (b *Backend) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	name, err := rowZone("apply", zone)
	if err != nil {
		return err
	}
	steps, err := convertSteps(zone, cs)
	if err != nil {
		return fmt.Errorf("powerdns backend: apply %s: %w", zone, err)
	}
	err = b.retry.do(ctx, func(int) error {
		return b.inTx(ctx, func(tx storeTx) error { return b.applySteps(ctx, tx, name, steps) })
	})
	if err != nil {
		return fmt.Errorf("powerdns backend: apply %s: %w", zone, err)
	}
	if err := b.ctl.afterCommit(ctx, name, false); err != nil {
		return fmt.Errorf("powerdns backend: apply %s: committed, but %w", zone, err)
	}
	return nil
}

// convertSteps checks the change set and converts it before any transaction: its errors
// do not depend on the database and are never retried.
func convertSteps(zone string, cs *backend.ChangeSet) ([]step, error) {
	if cs == nil || len(cs.Steps) == 0 {
		return nil, errors.New("empty change set")
	}
	convert := func(rrs []dns.RR) ([]row, error) {
		rows := make([]row, 0, len(rrs))
		for _, rr := range rrs {
			if !dns.IsSubDomain(zone, rr.Header().Name) {
				return nil, fmt.Errorf("record %s is outside zone %s", rr, zone)
			}
			if rr.Header().Rrtype == dns.TypeSOA {
				return nil, fmt.Errorf("SOA %s among the step's records (the step's SOAs are Old and New)", rr)
			}
			r, err := toRow(rr)
			if err != nil {
				return nil, err
			}
			rows = append(rows, r)
		}
		return rows, nil
	}
	steps := make([]step, 0, len(cs.Steps))
	for i, s := range cs.Steps {
		if s.Old == nil || s.New == nil || !strings.EqualFold(s.Old.Hdr.Name, zone) || !strings.EqualFold(s.New.Hdr.Name, zone) {
			return nil, fmt.Errorf("step %d: missing SOA or SOA of another zone", i+1)
		}
		if i > 0 && s.Old.Serial != cs.Steps[i-1].New.Serial {
			return nil, fmt.Errorf("step %d starts at serial %d, the previous one ended at %d: %w",
				i+1, s.Old.Serial, cs.Steps[i-1].New.Serial, backend.ErrInconsistent)
		}
		st := step{oldSerial: s.Old.Serial, newSerial: s.New.Serial}
		var err error
		if st.oldSOA, err = toRow(s.Old); err != nil {
			return nil, err
		}
		if st.newSOA, err = toRow(s.New); err != nil {
			return nil, err
		}
		if st.deleted, err = convert(s.Deleted); err != nil {
			return nil, err
		}
		if st.added, err = convert(s.Added); err != nil {
			return nil, err
		}
		steps = append(steps, st)
	}
	return steps, nil
}

func (b *Backend) applySteps(ctx context.Context, tx storeTx, zone string, steps []step) error {
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
	if err := checkSerial(ctx, tx, d.ID, zone, steps[0].oldSerial); err != nil {
		return err
	}
	touched := map[string]bool{}     // owners whose rows changed
	delegations := map[string]bool{} // owners below the apex whose NS rows changed
	for _, s := range steps {
		for _, r := range s.deleted {
			found, err := tx.deleteRecord(ctx, d.ID, r)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("serial %d -> %d deletes %s %s %q, which the zone does not hold: %w",
					s.oldSerial, s.newSerial, r.Name, r.Type, r.Content, backend.ErrInconsistent)
			}
			touch(touched, delegations, zone, r)
		}
		for _, r := range s.added {
			// Adding a record the zone holds already changes nothing in DNS; without the
			// delete PowerDNS would serve it twice.
			if _, err := tx.deleteRecord(ctx, d.ID, r); err != nil {
				return err
			}
			touch(touched, delegations, zone, r)
		}
		if err := tx.insertRecords(ctx, d.ID, withAuth(s.added)); err != nil {
			return err
		}
		if found, err := tx.deleteRecord(ctx, d.ID, s.oldSOA); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("the stored SOA is not the change set's %s: %w", s.oldSOA.Content, backend.ErrInconsistent)
		}
		if err := tx.insertRecords(ctx, d.ID, withAuth([]row{s.newSOA})); err != nil {
			return err
		}
	}
	names, err := fixENTs(ctx, tx, d.ID, zone, touched)
	if err != nil {
		return err
	}
	return fixAuth(ctx, tx, d.ID, zone, names, delegations)
}

func touch(touched, delegations map[string]bool, zone string, r row) {
	touched[r.Name] = true
	if r.Type == "NS" && r.Name != zone {
		delegations[r.Name] = true
	}
}

// withAuth marks rows authoritative; fixAuth corrects them once the change is in.
func withAuth(rows []row) []row {
	for i := range rows {
		rows[i].Auth = true
	}
	return rows
}

func checkSerial(ctx context.Context, tx storeTx, id int64, zone string, want uint32) error {
	rows, err := tx.rowsAt(ctx, id, []string{zone})
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.Type == "SOA" {
			serial, err := soaSerial(r.Content)
			if err != nil {
				return err
			}
			if serial != want {
				return fmt.Errorf("the change set starts at serial %d, the zone is at %d: %w", want, serial, backend.ErrInconsistent)
			}
			return nil
		}
	}
	return fmt.Errorf("the zone has no SOA row: %w", backend.ErrInconsistent)
}

// fixENTs makes the ENT rows right for the touched names and the names between them and
// the apex: a name with no record of its own needs an ENT row exactly when some record
// lies below it. It returns every name it looked at.
func fixENTs(ctx context.Context, tx storeTx, id int64, zone string, touched map[string]bool) ([]string, error) {
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
	hasData, hasENT, dataBelow := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range rows {
		if r.Type == "" {
			hasENT[r.Name] = true
			continue
		}
		hasData[r.Name] = true
		between(zone, r.Name, func(a string) { dataBelow[a] = true })
	}
	// Names without records of their own whose descendants are not among the rows read:
	// one pass over the zone's rows answers for all of them.
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
	for _, n := range names {
		need := !hasData[n] && dataBelow[n]
		switch {
		case need && !hasENT[n]:
			err = tx.insertRecords(ctx, id, []row{{Name: n, Auth: true}})
		case !need && hasENT[n]:
			_, err = tx.deleteRecord(ctx, id, row{Name: n})
		}
		if err != nil {
			return nil, err
		}
	}
	return names, nil
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
	for _, n := range sortedNames(all) {
		if n == zone {
			continue
		}
		auth, dsAuth := true, true
		if cut.above(zone, n) {
			auth, dsAuth = false, false
		} else if cut[n] {
			auth = false
		}
		if err := tx.setAuthAt(ctx, id, n, auth, dsAuth); err != nil {
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

package powerdns

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/go-sql-driver/mysql"
)

// fakeStore is the store in memory, for the zone logic's unit tests. A transaction works
// on copies of the domains it touches and writes them back on commit. fail, when set, is
// asked before every operation and may return an error to inject (a deadlock, a lost
// connection).
type fakeStore struct {
	mu      sync.Mutex
	domains map[string]*fakeDomain
	nextID  int64
	// nextRowID numbers rows as records.id does.
	nextRowID int64
	commits   int
	fail      func(op string) error
	// lostCommitReplies: this many commits succeed but report a lost connection.
	lostCommitReplies int
}

type fakeDomain struct {
	id         int64
	name, kind string
	account    string
	rows       []row
}

func newFakeStore() *fakeStore { return &fakeStore{domains: map[string]*fakeDomain{}} }

func (s *fakeStore) check(op string) error {
	if s.fail != nil {
		return s.fail(op)
	}
	return nil
}

func (s *fakeStore) begin(context.Context) (storeTx, error) {
	if err := s.check("begin"); err != nil {
		return nil, err
	}
	return &fakeTx{s: s, work: map[string]*fakeDomain{}, gone: map[string]bool{}}, nil
}

func (s *fakeStore) lookup(_ context.Context, zone string) (domain, string, error) {
	if err := s.check("lookup"); err != nil {
		return domain{}, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[zone]
	if d == nil {
		return domain{}, "", errNoDomain
	}
	for _, r := range d.rows {
		if r.Type == "SOA" && r.Name == zone {
			return domain{ID: d.id, Account: d.account}, r.Content, nil
		}
	}
	return domain{ID: d.id, Account: d.account}, "", nil
}

func (s *fakeStore) zones(_ context.Context, account string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n, d := range s.domains {
		if d.account == account {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// withID gives a row the next id, as AUTO_INCREMENT does.
func (s *fakeStore) withID(r row) row {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextRowID++
	r.ID = s.nextRowID
	return r
}

func (s *fakeStore) prepare(context.Context) error { return s.check("prepare") }
func (s *fakeStore) analyze(context.Context) error { return s.check("analyze") }
func (s *fakeStore) ping(context.Context) error    { return s.check("ping") }
func (s *fakeStore) close() error                  { return nil }

// put adds a domain directly, as an operator or another tool would.
func (s *fakeStore) put(name, account string, rows ...row) *fakeDomain {
	for i := range rows {
		rows[i] = s.withID(rows[i])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	d := &fakeDomain{id: s.nextID, name: name, kind: "NATIVE", account: account, rows: rows}
	s.domains[name] = d
	return d
}

// rowsOf returns a copy of a domain's rows, sorted, as strings.
func (s *fakeStore) rowsOf(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[name]
	if d == nil {
		return nil
	}
	return rowStrings(d.rows)
}

func rowStrings(rows []row) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s|%s|%s|%d|%d|%v", r.Name, r.Type, r.Content, r.TTL, r.Prio, r.Auth))
	}
	sort.Strings(out)
	return out
}

type fakeTx struct {
	s    *fakeStore
	work map[string]*fakeDomain // copies, by name
	gone map[string]bool
	ents map[string]bool // ENT candidates and their auth
	done bool
}

func (t *fakeTx) byID(id int64) *fakeDomain {
	for _, d := range t.work {
		if d.id == id {
			return d
		}
	}
	panic(fmt.Sprintf("fake store: domain %d used before domain() or createDomain()", id))
}

func (t *fakeTx) domain(_ context.Context, zone string) (domain, error) {
	if err := t.s.check("domain"); err != nil {
		return domain{}, err
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	d := t.s.domains[zone]
	if d == nil {
		return domain{}, errNoDomain
	}
	c := *d
	c.rows = slices.Clone(d.rows)
	t.work[zone] = &c
	return domain{ID: d.id, Account: d.account}, nil
}

func (t *fakeTx) createDomain(_ context.Context, zone, kind, account string) (int64, error) {
	if err := t.s.check("createDomain"); err != nil {
		return 0, err
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.s.domains[zone] != nil {
		return 0, fmt.Errorf("duplicate domain %s: %w", zone, errDomainExists)
	}
	t.s.nextID++
	t.work[zone] = &fakeDomain{id: t.s.nextID, name: zone, kind: kind, account: account}
	return t.s.nextID, nil
}

func (t *fakeTx) setKind(_ context.Context, id int64, kind string) error {
	t.byID(id).kind = kind
	return t.s.check("setKind")
}

func (t *fakeTx) deleteDomain(_ context.Context, id int64, _ string) (bool, error) {
	if err := t.s.check("deleteDomain"); err != nil {
		return false, err
	}
	d := t.byID(id)
	t.gone[d.name] = true
	delete(t.work, d.name)
	return false, nil
}

func (t *fakeTx) clearRecords(_ context.Context, id int64) error {
	t.byID(id).rows = nil
	return t.s.check("clearRecords")
}

func (t *fakeTx) insertRecords(_ context.Context, id int64, rows []row) error {
	if err := t.s.check("insertRecords"); err != nil {
		return err
	}
	d := t.byID(id)
	for _, r := range rows {
		d.rows = append(d.rows, t.s.withID(r))
	}
	return nil
}

func (t *fakeTx) deleteIDs(_ context.Context, id int64, ids []int64) error {
	if err := t.s.check("deleteIDs"); err != nil {
		return err
	}
	d := t.byID(id)
	d.rows = slices.DeleteFunc(d.rows, func(r row) bool { return slices.Contains(ids, r.ID) })
	return nil
}

func (t *fakeTx) setAuthIDs(_ context.Context, id int64, ids []int64, auth bool) error {
	d := t.byID(id)
	for i, r := range d.rows {
		if slices.Contains(ids, r.ID) {
			d.rows[i].Auth = auth
		}
	}
	return t.s.check("setAuthIDs")
}

func (t *fakeTx) addENTCandidates(_ context.Context, rows []row) error {
	if err := t.s.check("addENTCandidates"); err != nil {
		return err
	}
	if t.ents == nil {
		t.ents = map[string]bool{}
	}
	for _, r := range rows {
		t.ents[r.Name] = r.Auth
	}
	return nil
}

func (t *fakeTx) insertMissingENTs(_ context.Context, id int64) error {
	if err := t.s.check("insertMissingENTs"); err != nil {
		return err
	}
	d := t.byID(id)
	have := map[string]bool{}
	for _, r := range d.rows {
		have[r.Name] = true
	}
	for _, n := range sortedNames(t.ents) {
		if !have[n] {
			d.rows = append(d.rows, t.s.withID(row{Name: n, Auth: t.ents[n]}))
		}
	}
	t.ents = nil
	return nil
}

func (t *fakeTx) rowsAt(_ context.Context, id int64, names []string) ([]row, error) {
	var out []row
	for _, r := range t.byID(id).rows {
		if slices.Contains(names, r.Name) {
			out = append(out, r)
		}
	}
	return out, t.s.check("rowsAt")
}

func (t *fakeTx) dataBelow(_ context.Context, id int64, names []string) (map[string]bool, error) {
	found := map[string]bool{}
	for _, r := range t.byID(id).rows {
		for _, n := range names {
			if r.Type != "" && isBelow(r.Name, n) {
				found[n] = true
			}
		}
	}
	return found, t.s.check("dataBelow")
}

func (t *fakeTx) cutsBelow(_ context.Context, id int64, name string) ([]string, error) {
	set := map[string]bool{}
	for _, r := range t.byID(id).rows {
		if r.Type == "NS" && isBelow(r.Name, name) {
			set[r.Name] = true
		}
	}
	return sortedNames(set), t.s.check("cutsBelow")
}

func (t *fakeTx) setAuthAt(_ context.Context, id int64, name string, auth, dsAuth bool) error {
	d := t.byID(id)
	for i, r := range d.rows {
		if r.Name == name {
			d.rows[i].Auth = auth
			if r.Type == "DS" {
				d.rows[i].Auth = dsAuth
			}
		}
	}
	return t.s.check("setAuthAt")
}

func (t *fakeTx) setAuthBelow(_ context.Context, id int64, name string, auth bool) error {
	d := t.byID(id)
	for i, r := range d.rows {
		if isBelow(r.Name, name) {
			d.rows[i].Auth = auth
		}
	}
	return t.s.check("setAuthBelow")
}

func (t *fakeTx) commit() error {
	if err := t.s.check("commit"); err != nil {
		return err
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	for n := range t.gone {
		delete(t.s.domains, n)
	}
	for n, d := range t.work {
		t.s.domains[n] = d
	}
	t.s.commits++
	t.done = true
	if t.s.lostCommitReplies > 0 {
		t.s.lostCommitReplies--
		return mysql.ErrInvalidConn
	}
	return nil
}

func (t *fakeTx) rollback() error {
	t.done = true
	return nil
}

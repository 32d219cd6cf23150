package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// rawAXFR reads a whole AXFR of zone from server with miekg/dns's transfer client and
// throws the records away: the floor for anything that must receive the zone.
func rawAXFR(server, zone string) (time.Duration, int, error) {
	start := time.Now()
	m := new(dns.Msg)
	m.SetAxfr(dns.Fqdn(zone))
	tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 5 * time.Second}
	ch, err := tr.In(m, server)
	if err != nil {
		return 0, 0, err
	}
	n := 0
	for env := range ch {
		if env.Error != nil {
			return 0, 0, env.Error
		}
		n += len(env.RR)
	}
	return time.Since(start), n, nil
}

// checkZone times named-checkzone on a zone file, with the checks the bind9 backend's
// addzone turns off turned off here too (check-names ignore, check-integrity no): the
// cost of named parsing and loading the file.
func checkZone(zone, path string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, harness.LookPath("named-checkzone"), "-k", "ignore", "-i", "none",
		strings.TrimSuffix(zone, "."), path).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("named-checkzone: %v: %s", err, out)
	}
	return time.Since(start), nil
}

// pdnsRow is one row of PowerDNS's records table.
type pdnsRow struct {
	name, typ, content string
	ttl, prio          uint32
}

// zoneRows converts a zone file to records rows the way PowerDNS stores them (names
// lowercase without the trailing dot, MX priority in prio, TXT quoted), for the bulk-load
// floor.
func zoneRows(path, zone string) ([]pdnsRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, dns.Fqdn(zone), path)
	var rows []pdnsRow
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		r := pdnsRow{name: strings.TrimSuffix(strings.ToLower(h.Name), "."), typ: dns.TypeToString[h.Rrtype], ttl: h.Ttl}
		switch v := rr.(type) {
		case *dns.MX:
			r.prio, r.content = uint32(v.Preference), strings.TrimSuffix(v.Mx, ".")
		case *dns.CNAME:
			r.content = strings.TrimSuffix(v.Target, ".")
		case *dns.NS:
			r.content = strings.TrimSuffix(v.Ns, ".")
		case *dns.SOA:
			r.content = fmt.Sprintf("%s %s %d %d %d %d %d", strings.TrimSuffix(v.Ns, "."), strings.TrimSuffix(v.Mbox, "."),
				v.Serial, v.Refresh, v.Retry, v.Expire, v.Minttl)
		default:
			r.content = strings.TrimPrefix(rr.String(), h.String())
		}
		rows = append(rows, r)
	}
	return rows, zp.Err()
}

// bulkLoad inserts rows into the records table of db (the agent's PowerDNS database, so
// the floor and the agent write into the same table in the same state) under a domain of
// its own, with 1000-row INSERTs in one transaction, and returns the time from BEGIN to
// COMMIT. The rows are deleted again and purged before it returns.
func bulkLoad(t testing.TB, db *sql.DB, zone string, rows []pdnsRow) (time.Duration, error) {
	res, err := db.Exec(`INSERT INTO domains (name, type) VALUES (?, 'NATIVE')`, "bulk-load."+strings.TrimSuffix(zone, "."))
	if err != nil {
		return 0, err
	}
	id, _ := res.LastInsertId()
	defer func() {
		db.Exec(`DELETE FROM records WHERE domain_id = ?`, id)
		db.Exec(`DELETE FROM domains WHERE id = ?`, id)
		waitPurged(t, db)
	}()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	start := time.Now()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	if err := insertRows(ctx, tx, id, rows); err != nil {
		tx.Rollback()
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func insertRows(ctx context.Context, tx *sql.Tx, id int64, rows []pdnsRow) error {
	const batch = 1000
	var q strings.Builder
	args := make([]any, 0, batch*6)
	for lo := 0; lo < len(rows); lo += batch {
		hi := min(lo+batch, len(rows))
		q.Reset()
		args = args[:0]
		q.WriteString("INSERT INTO records (domain_id, name, type, content, ttl, prio, auth, ordername, disabled) VALUES ")
		for i, r := range rows[lo:hi] {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,1,NULL,0)")
			args = append(args, id, r.name, r.typ, r.content, r.ttl, r.prio)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

package powerdns

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

var _ backend.Reader = (*Backend)(nil)

// rowReader is the part of the SQL store that streams a domain's rows; the unit tests'
// fake store has none.
type rowReader interface {
	readRows(ctx context.Context, id int64, each func(row) error) error
}

// readRows streams the zone's rows, the SOA first: enabled rows with a type (empty
// non-terminals, type NULL, are PowerDNS's bookkeeping, not zone data), and the disabled
// NSEC, NSEC3 and NSEC3PARAM rows of a presigned zone, which PowerDNS serves built from
// ordername (dnssec.go).
func (s *sqlStore) readRows(ctx context.Context, id int64, each func(row) error) error {
	for _, where := range []string{`type = 'SOA'`, `type IS NOT NULL AND type NOT IN ('', 'SOA')`} {
		db, node := s.nodes.pick(ctx)
		rows, err := db.QueryContext(ctx, `SELECT name, type, COALESCE(content, ''), COALESCE(ttl, 0), COALESCE(prio, 0)
			FROM records WHERE domain_id = ? AND (disabled = 0 OR type IN ('NSEC', 'NSEC3', 'NSEC3PARAM')) AND `+where, id)
		if err != nil {
			s.nodes.failed(ctx, node, err)
			return err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.Name, &r.Type, &r.Content, &r.TTL, &r.Prio); err != nil {
				rows.Close()
				return err
			}
			if err := each(r); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Read implements backend.Reader: the zone's rows as they are in the database now,
// converted back to records (the reverse of toRow).
func (b *Backend) Read(ctx context.Context, zone string, each func([]dns.RR) error) error {
	name, err := rowZone("read", zone)
	if err != nil {
		return err
	}
	reader, ok := b.store.(rowReader)
	if !ok {
		return fmt.Errorf("powerdns backend: read %s: the store cannot read rows", zone)
	}
	d, _, err := b.store.lookup(ctx, name)
	if err != nil {
		return b.lookupErr("read", zone, err)
	}
	if d.Account != b.account {
		return b.notOwned("read", zone, d)
	}
	batch := make([]dns.RR, 0, backend.ReadBatch)
	err = reader.readRows(ctx, d.ID, func(r row) error {
		rr, err := fromRow(r)
		if err != nil {
			return err
		}
		batch = append(batch, rr)
		if len(batch) == cap(batch) {
			err, batch = each(batch), make([]dns.RR, 0, backend.ReadBatch)
		}
		return err
	})
	if err == nil && len(batch) > 0 {
		err = each(batch)
	}
	if err != nil {
		return fmt.Errorf("powerdns backend: read %s: %w", zone, err)
	}
	return nil
}

// fromRow converts a row back to the record it stands for: names absolute again (the
// content is parsed with the root as origin, so "ns1.example.com" is ns1.example.com.),
// MX and SRV with their priority in front, as PowerDNS serves them.
func fromRow(r row) (dns.RR, error) {
	content := r.Content
	if r.Type == "MX" || r.Type == "SRV" {
		content = strconv.Itoa(r.Prio) + " " + content
	}
	line := r.Name + ". " + strconv.FormatUint(uint64(r.TTL), 10) + " IN " + r.Type + " " + content
	zp := dns.NewZoneParser(strings.NewReader(line), ".", "")
	rr, ok := zp.Next()
	if !ok {
		err := zp.Err()
		if err == nil {
			err = fmt.Errorf("no record")
		}
		return nil, fmt.Errorf("row %s %s %q: %w", r.Name, r.Type, r.Content, err)
	}
	return rr, nil
}

package powerdns

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// A zone signed by its primary (BIND's dnssec-policy, Knot) arrives with RRSIG, NSEC or
// NSEC3 and NSEC3PARAM records. PowerDNS serves such a zone "presigned"
// (doc.powerdns.com/authoritative/dnssec/modes-of-operation.html): PRESIGNED metadata,
// the RRSIG rows served as they are, and the NSEC/NSEC3 records built at query time from
// the rows' ordername and auth, with their stored RRSIGs. The agent fills the rows as
// PowerDNS's own secondary does after an AXFR (pdns 4.7 slavecommunicator.cc; checked
// row by row against it): `pdnsutil rectify-zone` refuses presigned zones.
//
//   - NSEC, NSEC3 and NSEC3PARAM rows are kept disabled (PowerDNS does not read them; the
//     agent reads them back for verify and dump, and an IXFR deletes them by content).
//     NSEC3PARAM goes to the NSEC3PARAM metadata, its flags being the NSEC3 records'
//     opt-out bit, as PowerDNS's secondary writes it.
//   - RRSIG rows: auth 1 always, ordername NULL.
//   - Other rows: ordername when authoritative, or NS (at a delegation; with NSEC3
//     opt-out only at a secure one, with DS); NULL otherwise (glue). NSEC: the owner
//     relative to the apex, labels reversed, space-separated ("" at the apex). NSEC3: the
//     owner's hash in lower-case base32hex (RFC 5155 §5).
//   - Empty non-terminals: NSEC3 needs them in the chain (RFC 5155 §7.1), NSEC does not.

// signing is what PowerDNS must know of how a zone is signed.
type signing struct {
	presigned bool
	nsec3     *dns.NSEC3PARAM // nil: NSEC
	optOut    bool
}

func (s signing) equal(o signing) bool {
	if s.presigned != o.presigned || s.optOut != o.optOut || (s.nsec3 == nil) != (o.nsec3 == nil) {
		return false
	}
	return s.nsec3 == nil || (s.nsec3.Hash == o.nsec3.Hash && s.nsec3.Iterations == o.nsec3.Iterations &&
		strings.EqualFold(s.nsec3.Salt, o.nsec3.Salt))
}

// metaNSEC3PARAM is the NSEC3PARAM metadata: "ALG FLAGS ITERATIONS SALT".
func (s signing) metaNSEC3PARAM() string {
	flags, salt := 0, s.nsec3.Salt
	if s.optOut {
		flags = 1
	}
	if salt == "" {
		salt = "-"
	}
	return fmt.Sprintf("%d %d %d %s", s.nsec3.Hash, flags, s.nsec3.Iterations, strings.ToLower(salt))
}

// parseNSEC3PARAM reads NSEC3PARAM content or metadata ("1 0 0 -").
func parseNSEC3PARAM(content string) (*dns.NSEC3PARAM, bool) {
	f := strings.Fields(content)
	if len(f) != 4 {
		return nil, false
	}
	alg, err1 := strconv.ParseUint(f[0], 10, 8)
	flags, err2 := strconv.ParseUint(f[1], 10, 8)
	iter, err3 := strconv.ParseUint(f[2], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, false
	}
	p := &dns.NSEC3PARAM{Hash: uint8(alg), Flags: uint8(flags), Iterations: uint16(iter), Salt: f[3]}
	if p.Salt == "-" {
		p.Salt = ""
	}
	return p, true
}

// apexSigning decides from the apex rows: a zone is presigned when its apex holds an
// RRSIG, NSEC or NSEC3PARAM (every signed zone's SOA is signed); NSEC3 when the apex holds
// an NSEC3PARAM (the first in content order if the primary is changing parameters).
func apexSigning(zone string, rows []row) signing {
	var s signing
	for _, r := range rows {
		if r.Name != zone {
			continue
		}
		switch r.Type {
		case "RRSIG", "NSEC":
			s.presigned = true
		case "NSEC3PARAM":
			s.presigned = true
			if p, ok := parseNSEC3PARAM(r.Content); ok && (s.nsec3 == nil || r.Content < s.metaNSEC3PARAM()) {
				s.nsec3 = p
			}
		}
	}
	return s
}

// hashed is name's NSEC3 owner label: lower-case base32hex of its hash (RFC 5155 §5).
func (s signing) hashed(name string) string {
	fq := name + "."
	if name == "." {
		fq = "."
	}
	return strings.ToLower(dns.HashName(fq, s.nsec3.Hash, s.nsec3.Iterations, s.nsec3.Salt))
}

// candidate is the ordername of name if it has one: the NSEC3 hash, or for NSEC the name
// relative to the apex with its labels reversed and separated by spaces, as PowerDNS's
// gsql backend writes it (DNSName::labelReverse().toString(" ", false)).
func (s signing) candidate(zone, name string) string {
	if s.nsec3 != nil {
		return s.hashed(name)
	}
	if name == zone {
		return ""
	}
	rel := strings.TrimSuffix(name, "."+zone)
	var labels []string
	for {
		p, ok := parent(rel)
		if !ok {
			labels = append(labels, rel)
			break
		}
		labels = append(labels, rel[:len(rel)-len(p)-1])
		rel = p
	}
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, " ")
}

// order sets r's ordername; secure says its owner holds a DS.
func (s signing) order(zone string, r *row, secure bool) {
	r.Order, r.Ordered = "", false
	if !s.presigned || r.Disabled || r.Type == "RRSIG" {
		return
	}
	var ok bool
	switch {
	case r.Type == "":
		ok = s.nsec3 != nil && (r.Auth || !s.optOut)
	case r.Auth:
		ok = true
	case r.Type == "NS":
		ok = s.nsec3 == nil || !s.optOut || secure
	}
	if ok {
		r.Order, r.Ordered = s.candidate(zone, r.Name), true
	}
}

// signingTx is what the SQL store adds for signed zones; the unit tests' fake store has
// none, and the backend then treats every zone as unsigned.
type signingTx interface {
	// signing reads the zone's PRESIGNED and NSEC3PARAM metadata.
	signing(ctx context.Context, id int64) (signing, error)
	// setSigning writes them, if the zone is presigned now or was (the agent's metadata
	// then): metadata an operator set for live signing of an unsigned zone stays.
	setSigning(ctx context.Context, id int64, s signing) error
	// setOrder writes the ordername of rows by id (nil: NULL).
	setOrder(ctx context.Context, id int64, order map[int64]*string) error
	// zoneRows reads every row of the zone (with ids).
	zoneRows(ctx context.Context, id int64) ([]row, error)
}

// fixOrder gives rows the ordername s wants, writing only the rows that differ. rows
// must hold every row at each of their owners (DS decides for opt-out delegations).
func fixOrder(ctx context.Context, tx signingTx, id int64, zone string, s signing, rows []row) error {
	secure := map[string]bool{}
	for _, r := range rows {
		if r.Type == "DS" {
			secure[r.Name] = true
		}
	}
	updates := map[int64]*string{}
	for _, r := range rows {
		want := r
		s.order(zone, &want, secure[r.Name])
		if want.Ordered != r.Ordered || want.Order != r.Order {
			if want.Ordered {
				v := want.Order
				updates[r.ID] = &v
			} else {
				updates[r.ID] = nil
			}
		}
	}
	return tx.setOrder(ctx, id, updates)
}

// signingFix brings ordernames and metadata to the zone's signing after an incremental
// change whose rows are in: at the names the change touched (fixAt, with the names
// between them and the apex), or over the whole zone when the signing changed (every
// ordername may change) or a delegation did (auth and ordername below it change).
type signingFix struct {
	now, old signing
	tx       signingTx // nil: nothing to do, the zone neither is nor was presigned
	whole    bool
}

// planSigning reads the zone's signing before and after the change, whose rows are in.
func planSigning(ctx context.Context, t storeTx, id int64, zone string, delegations bool) (*signingFix, error) {
	tx, ok := t.(signingTx)
	if !ok {
		return &signingFix{}, nil
	}
	old, err := tx.signing(ctx, id)
	if err != nil {
		return nil, err
	}
	apex, err := t.rowsAt(ctx, id, []string{zone})
	if err != nil {
		return nil, err
	}
	now := apexSigning(zone, apex)
	if now.nsec3 != nil {
		if old.nsec3 != nil && (signing{presigned: true, nsec3: now.nsec3}).equal(signing{presigned: true, nsec3: old.nsec3}) {
			now.optOut = old.optOut
		} else if now.optOut, err = apexOptOut(ctx, t, id, zone, now); err != nil {
			return nil, err
		}
	}
	sf := &signingFix{now: now, old: old}
	if now.presigned || old.presigned {
		sf.tx, sf.whole = tx, !now.equal(old) || delegations
	}
	return sf, nil
}

// fixAt fixes the ordernames at names, unless the whole zone is done at the end.
func (sf *signingFix) fixAt(ctx context.Context, t storeTx, id int64, zone string, names []string) error {
	if sf.tx == nil || sf.whole {
		return nil
	}
	rows, err := t.rowsAt(ctx, id, names)
	if err != nil {
		return err
	}
	return fixOrder(ctx, sf.tx, id, zone, sf.now, rows)
}

// finish fixes the apex, or the whole zone and the metadata.
func (sf *signingFix) finish(ctx context.Context, t storeTx, id int64, zone string) error {
	if sf.tx == nil {
		return nil
	}
	if !sf.whole {
		return sf.fixAt(ctx, t, id, zone, []string{zone})
	}
	if !sf.now.equal(sf.old) {
		if err := sf.tx.setSigning(ctx, id, sf.now); err != nil {
			return err
		}
	}
	rows, err := sf.tx.zoneRows(ctx, id)
	if err != nil {
		return err
	}
	return fixOrder(ctx, sf.tx, id, zone, sf.now, rows)
}

// apexOptOut reads the opt-out flag of the apex's NSEC3 record (RFC 5155 §3.1.2.1: the
// flag is per record; a zone uses opt-out on all or none).
func apexOptOut(ctx context.Context, t storeTx, id int64, zone string, s signing) (bool, error) {
	owner := s.hashed(zone) + "." + zone
	rows, err := t.rowsAt(ctx, id, []string{owner})
	if err != nil {
		return false, err
	}
	for _, r := range rows {
		if r.Type == "NSEC3" {
			f := strings.Fields(r.Content)
			if len(f) > 1 {
				n, _ := strconv.Atoi(f[1])
				return n&1 == 1, nil
			}
		}
	}
	return false, nil
}

// presigned returns c without rectify-zone: pdnsutil refuses to rectify a presigned zone
// ("Rectify presigned zone is not allowed/necessary"), and the agent filled its rows.
func (c control) presigned(s signing) control {
	if s.presigned {
		c.pdnsutil = nil
	}
	return c
}

package powerdns

// cuts is a set of delegation points: owners, in row form, of NS records other than the
// apex.
type cuts map[string]bool

// auth is the records.auth value of a record of type typ at name in zone (all in row
// form). PowerDNS is not authoritative for the NS records of a delegation nor for
// anything below one (glue), but it is for the DS at the delegation: "The 'auth' field
// should be 0 however for NS records which are used for delegation, and also for any
// glue (A, AAAA) records present for this purpose. Do note that the DS record for a
// secure delegation should be authoritative!" (doc.powerdns.com, Generic SQL backends,
// "Rules for filling out DNSSEC fields"). With gmysql-dnssec on (Debian's shipped
// configuration) PowerDNS answers from these flags: a wrong auth=1 on glue makes it
// answer authoritatively for names it delegated.
//
// An RRSIG row is always authoritative, as PowerDNS's secondary stores it ("RRSIG is
// always auth, even inside a delegation", slavecommunicator.cc): the RRSIG of a DS sits at
// the delegation.
func (c cuts) auth(zone, name, typ string) bool {
	if len(c) == 0 || typ == "RRSIG" {
		return true
	}
	if name != zone && c[name] && typ != "DS" {
		return false
	}
	return !c.above(zone, name)
}

// above reports a delegation strictly between zone and name.
func (c cuts) above(zone, name string) bool {
	found := false
	between(zone, name, func(n string) {
		if c[n] {
			found = true
		}
	})
	return found
}

// isBelow reports whether name is strictly below ancestor (both in row form).
func isBelow(name, ancestor string) bool {
	for n, ok := parent(name); ok; n, ok = parent(n) {
		if n == ancestor {
			return true
		}
	}
	return false
}

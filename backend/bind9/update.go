package bind9

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// errUpdateRefused is named answering an UPDATE with REFUSED: the zone has no
// update-policy granting update_key.
var errUpdateRefused = errors.New("named refused the UPDATE")

// maxUpdateSize is the largest UPDATE sent: a DNS message over TCP holds 65535 bytes, less
// room for the TSIG record added when it is signed.
const maxUpdateSize = 65535 - 512

// Apply implements backend.Incremental. In update mode the change set goes to named as one
// signed UPDATE, which named applies atomically and records in its journal: O(change), no
// reload. A change set too big for one message, and every change set in reload mode, is
// applied to the zone file instead, which named then loads.
func (b *Backend) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	zone, err := canonical("apply", zone)
	if err != nil {
		return err
	}
	if err := b.apply(ctx, zone, cs); err != nil {
		return fmt.Errorf("bind9 backend: apply %s: %w", zone, err)
	}
	return nil
}

func (b *Backend) apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	if err := checkChangeSet(zone, cs); err != nil {
		return err
	}
	if err := b.ensureOwned(ctx, zone); err != nil {
		return err
	}
	// named renumbers a zone whose UPDATE does not raise the serial (serial-update-method),
	// so a change set that keeps or lowers it (a resync repairing the served zone) goes
	// through the file, which named loads as it is.
	if b.cfg.UpdateMode == ModeUpdate && int32(cs.To()-cs.From()) > 0 && fitsUpdate(cs) {
		small, err := cs.InMemory()
		if err != nil {
			return err
		}
		if m := updateMsg(zone, small); m.Len() <= maxUpdateSize && !signedChange(small) {
			err := b.sendUpdate(ctx, zone, m, cs.To())
			if !errors.Is(err, errUpdateRefused) {
				return err
			}
			// The zone does not take updates from us: it was created in reload mode, or
			// under another update_key. The file still works.
		}
	}
	patched := func(ctx context.Context) (string, error) { return b.patchTemp(ctx, zone, cs) }
	return b.load(ctx, zone, patched, cs.To())
}

// signedChange reports a change set that changes DNSSEC records (a zone signed by its
// primary). named refuses such an UPDATE to a zone holding a DNSKEY ("explicit RRSIG
// updates are currently not supported in secure zones except at the apex", "explicit
// NSEC updates are not allowed in secure zones"), so it goes through the file at once.
func signedChange(cs *backend.ChangeSet) bool {
	for _, s := range cs.Steps {
		for _, rrs := range [][]dns.RR{s.Deleted, s.Added} {
			for _, rr := range rrs {
				switch rr.Header().Rrtype {
				case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM:
					return true
				}
			}
		}
	}
	return false
}

// checkChangeSet refuses a change set that could not have come from a transfer of the
// zone: no steps, steps that do not connect, SOAs of another zone, or records outside it.
func checkChangeSet(zone string, cs *backend.ChangeSet) error {
	if cs == nil || len(cs.Steps) == 0 {
		return errors.New("empty change set")
	}
	for i, s := range cs.Steps {
		if s.Old == nil || s.New == nil || !strings.EqualFold(s.Old.Hdr.Name, zone) || !strings.EqualFold(s.New.Hdr.Name, zone) {
			return fmt.Errorf("step %d: missing SOA or SOA of another zone", i)
		}
		if i > 0 && s.Old.Serial != cs.Steps[i-1].New.Serial {
			return fmt.Errorf("%w: step %d starts at serial %d, the previous one ended at %d",
				backend.ErrInconsistent, i, s.Old.Serial, cs.Steps[i-1].New.Serial)
		}
	}
	return cs.Records(func(i int, _ bool, rr dns.RR) error {
		if !dns.IsSubDomain(zone, rr.Header().Name) {
			return fmt.Errorf("step %d: record %s is outside the zone", i, rr)
		}
		if rr.Header().Rrtype == dns.TypeSOA {
			return fmt.Errorf("step %d: SOA among the changed records: %s", i, rr)
		}
		return nil
	})
}

// fitsUpdate tells whether the change set could fit one UPDATE at all: every record takes
// at least 12 bytes even compressed (a name pointer, type, class, TTL and length), so a
// larger one is not even loaded into memory to try.
func fitsUpdate(cs *backend.ChangeSet) bool {
	d, a := cs.Size()
	return d+a+2*len(cs.Steps) <= maxUpdateSize/12
}

// updateMsg builds one RFC 2136 UPDATE for the whole change set. Its prerequisite is the
// first step's old SOA, exactly, so named refuses it (NXRRSET) unless the zone is at the
// version the change set starts from. Steps follow in order, each ending with its new SOA:
// named then keeps the primary's serial instead of incrementing its own.
//
// Within a step deletions come first, so a name can change from A to CNAME. Deletions of
// apex NS records come after the additions: named ignores a deletion of the last NS at the
// apex, so replacing the whole NS set has to add before it deletes. A record deleted and
// added again in the same step (a TTL change) is only added, and named updates the TTL:
// a deletion after the addition would remove the re-added apex NS.
func updateMsg(zone string, cs *backend.ChangeSet) *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Used([]dns.RR{dns.Copy(cs.Steps[0].Old)})
	for _, s := range cs.Steps {
		readded := map[string]bool{}
		for _, rr := range s.Added {
			readded[backend.Key(rr)] = true
		}
		var deleted, apexNS []dns.RR
		for _, rr := range s.Deleted {
			switch {
			case readded[backend.Key(rr)]:
			case rr.Header().Rrtype == dns.TypeNS && strings.EqualFold(rr.Header().Name, zone):
				apexNS = append(apexNS, dns.Copy(rr))
			default:
				deleted = append(deleted, dns.Copy(rr))
			}
		}
		m.Remove(deleted)
		m.Insert(copyAll(s.Added))
		m.Remove(apexNS)
		m.Insert([]dns.RR{dns.Copy(s.New)})
	}
	// Compression makes large steps fit; named reads compressed UPDATEs.
	m.Compress = true
	return m
}

func copyAll(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

// sendUpdate signs the UPDATE with update_key, sends it to named over TCP and checks that
// named then serves the change set's last serial.
func (b *Backend) sendUpdate(ctx context.Context, zone string, m *dns.Msg, serial uint32) error {
	key := b.cfg.UpdateKey
	m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	c := dns.Client{Net: "tcp", TsigSecret: map[string]string{key.Name: key.Secret}}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RNDCTimeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, b.cfg.QueryDestination)
	if err != nil {
		return fmt.Errorf("UPDATE to named at %s: %w", b.cfg.QueryDestination, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeRefused:
		return errUpdateRefused
	case dns.RcodeNXRrset:
		return fmt.Errorf("%w: named refused the UPDATE because the zone is not at the change set's first serial (NXRRSET)", backend.ErrInconsistent)
	default:
		return fmt.Errorf("named answered the UPDATE with %s%s", dns.RcodeToString[r.Rcode], tsigError(r))
	}
	return b.waitServed(ctx, zone, serial)
}

func tsigError(r *dns.Msg) string {
	if t := r.IsTsig(); t != nil && t.Error != 0 {
		return " (TSIG " + dns.RcodeToString[int(t.Error)] + ": is update_key defined in named.conf with the same secret?)"
	}
	return ""
}

// load puts a new zone file in place and makes named serve it at serial; produce writes
// the file as a temp file and returns its path. A zone named does not update itself is
// renamed into place and reloaded (`rndc reload`). A dynamic zone refuses reload, and
// named rewrites its file and journal itself, so it goes `rndc freeze` (no more updates,
// journal synced into the file), rename, `rndc thaw` (named loads the file and takes
// updates again). Whether a zone is dynamic is named's call (update mode, allow-update in
// zone_config, a mode switch since the zone was created), so load asks by freezing: a zone
// that is not dynamic says so.
func (b *Backend) load(ctx context.Context, zone string, produce func(context.Context) (string, error), serial uint32) error {
	_, err := b.rndc.Run(ctx, b.zoneArgs("freeze", zone)...)
	switch {
	case said(err, "not dynamic"):
		return b.reload(ctx, zone, produce, serial)
	case said(err, "already frozen"):
		// Left frozen (an agent killed between freeze and thaw, or a thaw whose load
		// failed): frozen is what this load needs, and its thaw ends it.
	case err != nil:
		return err
	}
	// Never leave the zone frozen, not even when ctx ends (a DELETE, the shutdown): named
	// would refuse updates for good, and serve the old version with the new file in place.
	thawed := false
	thaw := func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RNDCTimeout)
		defer cancel()
		_, err := b.rndc.Run(ctx, b.zoneArgs("thaw", zone)...)
		thawed = err == nil
		return err
	}
	defer func() {
		if !thawed {
			thaw() //nolint:errcheck // the load failed already; this is the last try
		}
	}()
	if err := b.waitDumped(ctx, zone); err != nil {
		return err
	}
	if err := b.installFrom(ctx, produce, zone); err != nil {
		return err
	}
	// The journal leads from the old file's serial; replayed onto the new file it would
	// corrupt it if the serials happened to line up.
	if err := os.Remove(b.dir.Path(zone) + journalSuffix); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := thaw(); err != nil {
		return err
	}
	return b.waitServed(ctx, zone, serial)
}

func (b *Backend) reload(ctx context.Context, zone string, produce func(context.Context) (string, error), serial uint32) error {
	if err := b.installFrom(ctx, produce, zone); err != nil {
		return err
	}
	if _, err := b.rndc.Run(ctx, b.zoneArgs("reload", zone)...); err != nil {
		return err
	}
	return b.waitServed(ctx, zone, serial)
}

// installFrom produces the temp file and renames it over the zone's file.
func (b *Backend) installFrom(ctx context.Context, produce func(context.Context) (string, error), zone string) error {
	tmp, err := produce(ctx)
	if err != nil {
		return err
	}
	return b.install(tmp, zone)
}

// waitDumped waits until the zone file holds the serial named serves. `rndc freeze` answers
// before named has finished writing the zone out (named dumps to a temp file and renames
// it over the zone file), and a file renamed into place before that would be overwritten.
func (b *Backend) waitDumped(ctx context.Context, zone string) error {
	serving, unserved, err := b.querySOA(ctx, zone)
	if err != nil {
		return err
	}
	if unserved != "" {
		return fmt.Errorf("named does not serve the zone: it answers %s", unserved)
	}
	var inFile uint32
	if poll(ctx, b.cfg.RNDCTimeout, func() bool {
		inFile, err = b.dir.Serial(zone)
		return err == nil && inFile == serving
	}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("after rndc freeze: %w", err)
	}
	return fmt.Errorf("after rndc freeze named did not write serial %d to the zone file within %s (it holds %d)", serving, b.cfg.RNDCTimeout, inFile)
}

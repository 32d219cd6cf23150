package transfer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/miekg/dns"
)

// IXFRResult is what an IXFR brought: nothing new, a change set, or (RFC 1995 §4: the
// primary may answer with the whole zone) a full zone to apply as a replace.
type IXFRResult struct {
	UpToDate bool
	Changes  *backend.ChangeSet
	Full     *Stream
	Records  int // wire records, for the summary
	Bytes    int
}

// ixfrMemoryRecords is how many records of a change set are held in memory; beyond, the
// change set spills to a file in Client.SpoolDir, so a huge IXFR costs disk, not memory.
const ixfrMemoryRecords = 20000

// maxIXFRSteps bounds the version steps of one IXFR: each costs its two SOAs in memory. A
// longer history is fetched by AXFR instead (the IXFR fails and falls back).
const maxIXFRSteps = 10000

// errIXFRHistory marks an IXFR answer whose version history does not connect.
var errIXFRHistory = errors.New("inconsistent IXFR history")

// IXFR asks master for the changes since serial.
func (c *Client) IXFR(ctx context.Context, master netip.AddrPort, zone string, serial uint32) (*IXFRResult, error) {
	req := new(dns.Msg).SetIxfr(zone, serial, ".", ".")
	s, first, err := c.startTransfer(ctx, master, req)
	if err != nil {
		return nil, fmt.Errorf("IXFR %s from %s: %w", zone, master, err)
	}
	res, err := decodeIXFR(s, first.Answer, serial, c.SpoolDir)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("IXFR %s from %s: %w", zone, master, err)
	}
	if res.Full == nil {
		s.Close()
	}
	return res, nil
}

// decodeIXFR reads the rest of the answer whose first message had the records first (RFC
// 1995 §4): the new SOA, then either nothing more (we are
// current), the zone's other records (a full transfer), or difference sequences, each an
// old SOA, deleted records, a new SOA and added records; and the new SOA again at the end.
// The change set is the caller's to Close.
func decodeIXFR(s *session, first []dns.RR, serial uint32, spoolDir string) (_ *IXFRResult, err error) {
	rrs := first
	for {
		if soa, ok := firstSOA(rrs, s.zone); ok && len(rrs) == 1 && !Newer(soa.Serial, serial) {
			s.finished = true
			return &IXFRResult{UpToDate: true, Records: s.Records, Bytes: s.Bytes}, nil
		}
		if len(rrs) >= 2 {
			break
		}
		msg, err := s.readNext(len(rrs) == 1)
		if err != nil {
			return nil, err
		}
		rrs = append(rrs, msg.Answer...)
	}
	last, ok := firstSOA(rrs, s.zone)
	if !ok {
		return nil, errors.New("the answer does not start with the zone's SOA")
	}
	if second, isSOA := rrs[1].(*dns.SOA); !isSOA || second.Serial == last.Serial {
		full, err := newStream(s, "IXFR", rrs)
		if err != nil {
			return nil, err
		}
		return &IXFRResult{Full: full}, nil
	}

	d := &ixfrDecoder{zone: s.zone, last: last, cs: &backend.ChangeSet{Zone: s.zone}}
	d.cs.Spool(spoolDir, ixfrMemoryRecords)
	defer func() {
		if err != nil {
			d.cs.Close()
		}
	}()
	rrs = rrs[1:]
	for {
		for _, rr := range rrs {
			if err := d.add(rr); err != nil {
				return nil, err
			}
		}
		if d.done {
			if err := s.complete(); err != nil {
				return nil, err
			}
			s.finished = true
			break
		}
		msg, err := s.read()
		if err != nil {
			return nil, err
		}
		rrs = msg.Answer
	}
	if from := d.cs.From(); from != serial {
		return nil, fmt.Errorf("%w: changes start at serial %d, we hold %d", errIXFRHistory, from, serial)
	}
	return &IXFRResult{Changes: d.cs, Records: s.Records, Bytes: s.Bytes}, nil
}

// loneSOAWait is how long an IXFR answer that so far holds only a newer SOA may take to
// go on. RFC 1995 §4 has a server answer with its SOA alone when the changes do not fit
// (ask by AXFR), and some send that over TCP and leave the connection open (PowerDNS with
// SOA-EDIT, ixfrdist): waiting the whole transfer_stall_timeout for more delayed every
// update from such a primary by it.
const loneSOAWait = 2 * time.Second

// errLoneSOA is an IXFR answered with a newer SOA alone: the changes are to be had by AXFR.
var errLoneSOA = errors.New("the master answered the IXFR with its newer SOA alone (RFC 1995 §4: ask by AXFR)")

// readNext reads the next message of an IXFR answer; lone says the answer so far is one
// newer SOA, and then it waits loneSOAWait at most.
func (s *session) readNext(lone bool) (*dns.Msg, error) {
	if !lone {
		return s.read()
	}
	overall := s.deadline
	if limit := time.Now().Add(loneSOAWait); overall.IsZero() || limit.Before(overall) {
		s.deadline = limit
	}
	msg, err := s.read()
	s.deadline = overall
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && (overall.IsZero() || time.Now().Before(overall)) {
		return nil, errLoneSOA
	}
	return msg, err
}

// ixfrDecoder folds difference sequences into a change set, one record at a time.
type ixfrDecoder struct {
	zone   string
	last   *dns.SOA // the serial the answer ends at
	cs     *backend.ChangeSet
	adding bool // within the current step: past its new SOA
	done   bool
}

func (d *ixfrDecoder) add(rr dns.RR) error {
	if d.done {
		return errors.New("records after the closing SOA")
	}
	soa, isSOA := rr.(*dns.SOA)
	if !isSOA || !strings.EqualFold(soa.Hdr.Name, d.zone) {
		if len(d.cs.Steps) == 0 {
			return errIXFRHistory
		}
		return d.cs.Append(rr, d.adding)
	}
	n := len(d.cs.Steps)
	switch {
	case n > 0 && !d.adding: // the new SOA of the current step
		step := &d.cs.Steps[n-1]
		if !Newer(soa.Serial, step.Old.Serial) {
			return fmt.Errorf("%w: step from %d goes to %d", errIXFRHistory, step.Old.Serial, soa.Serial)
		}
		step.New, d.adding = soa, true
	case n > 0 && d.cs.Steps[n-1].New.Serial == d.last.Serial: // the closing SOA
		if soa.Serial != d.last.Serial {
			return fmt.Errorf("%w: closing SOA %d, opening %d", errIXFRHistory, soa.Serial, d.last.Serial)
		}
		d.done = true
	default: // the old SOA of the next step
		if n > 0 && soa.Serial != d.cs.Steps[n-1].New.Serial {
			return fmt.Errorf("%w: step starts at %d after one ending at %d", errIXFRHistory, soa.Serial, d.cs.Steps[n-1].New.Serial)
		}
		if n == maxIXFRSteps {
			return fmt.Errorf("%w: more than %d version steps", errIXFRHistory, maxIXFRSteps)
		}
		d.cs.StartStep(soa)
		d.adding = false
	}
	return nil
}

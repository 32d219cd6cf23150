package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const fuzzZone = "example.com."

// FuzzIXFRDecoder feeds bytes as the TCP stream of a primary's answer to an IXFR request
// for fuzzZone at serial: length-prefixed messages, read by the session as a transfer
// reads them (id, QR, rcode, caps, names in the zone), then decoded as RFC 1995 says.
// The request id is taken from the first message, so mutations of the records are not
// all lost to an id mismatch.
//
// It fails on a panic, and on any result that is not consistent: "up to date" only when
// the primary's serial is not newer than ours; a change set whose first step does not
// start at our serial, whose steps do not chain with each serial going forward, that
// does not end at the primary's serial, or that carries the zone's SOA among its records
// or a record outside the zone; a full zone that does not start with the primary's SOA
// or that ends without error before its closing SOA.
func FuzzIXFRDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte, serial uint32) {
		s := fuzzSession(stream)
		first, err := s.read()
		if err != nil {
			return
		}
		res, err := decodeIXFR(s, first.Answer, serial, "")
		if err != nil {
			return
		}
		opening, ok := openingSOA(stream)
		if !ok {
			t.Fatalf("decoded %+v from a stream without an opening SOA", res)
		}
		switch {
		case res.UpToDate:
			if res.Changes != nil || res.Full != nil || Newer(opening.Serial, serial) {
				t.Fatalf("up to date at %d, but the primary is at %d (changes %v, full %v)", serial, opening.Serial, res.Changes, res.Full)
			}
		case res.Changes != nil:
			if res.Full != nil {
				t.Fatal("both a change set and a full zone")
			}
			checkChangeSet(t, res, serial, opening.Serial)
		case res.Full != nil:
			checkFullZone(t, res.Full, opening.Serial)
		default:
			t.Fatalf("an empty result: %+v", res)
		}
	})
}

func checkChangeSet(t *testing.T, res *IXFRResult, serial, to uint32) {
	t.Helper()
	cs := res.Changes
	if len(cs.Steps) == 0 {
		t.Fatal("a change set without steps")
	}
	if cs.From() != serial || cs.To() != to {
		t.Fatalf("change set from %d to %d, want from %d (ours) to %d (the primary's)", cs.From(), cs.To(), serial, to)
	}
	for i, step := range cs.Steps {
		if step.Old == nil || step.New == nil {
			t.Fatalf("step %d lacks a SOA: %+v", i, step)
		}
		if !strings.EqualFold(step.Old.Hdr.Name, fuzzZone) || !strings.EqualFold(step.New.Hdr.Name, fuzzZone) {
			t.Fatalf("step %d has SOAs of %s and %s", i, step.Old.Hdr.Name, step.New.Hdr.Name)
		}
		if !Newer(step.New.Serial, step.Old.Serial) {
			t.Fatalf("step %d goes from %d to %d", i, step.Old.Serial, step.New.Serial)
		}
		if i > 0 && step.Old.Serial != cs.Steps[i-1].New.Serial {
			t.Fatalf("step %d starts at %d after one ending at %d", i, step.Old.Serial, cs.Steps[i-1].New.Serial)
		}
		for _, rr := range append(append([]dns.RR(nil), step.Deleted...), step.Added...) {
			if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, fuzzZone) {
				t.Fatalf("step %d carries the zone's SOA %v as a record", i, rr)
			}
			if !dns.IsSubDomain(fuzzZone, rr.Header().Name) {
				t.Fatalf("step %d carries %v, outside the zone", i, rr)
			}
		}
	}
	if res.Records == 0 || res.Bytes == 0 {
		t.Fatalf("a change set counted %d records in %d bytes", res.Records, res.Bytes)
	}
	// What the backends do with it next must hold too.
	_ = cs.String()
	p := cs.Patcher()
	if err := p.Start(&dns.SOA{Serial: serial}); err != nil {
		t.Fatalf("the patcher refuses a change set from our own serial: %v", err)
	}
	if p.SOA().Serial != to {
		t.Fatalf("the patcher ends at %d, want %d", p.SOA().Serial, to)
	}
}

// checkFullZone reads the zone to its end: the zone's SOA first, no other SOA of the
// zone in it, and io.EOF only once the closing SOA came.
func checkFullZone(t *testing.T, st *Stream, serial uint32) {
	t.Helper()
	if st.Serial() != serial {
		t.Fatalf("full zone at serial %d, the answer opened with %d", st.Serial(), serial)
	}
	first := true
	for {
		batch, err := st.Next()
		if err == io.EOF { // a wrapped io.EOF is a broken connection, not the end
			if !st.done {
				t.Fatal("io.EOF before the closing SOA")
			}
			return
		}
		if err != nil {
			return
		}
		for i, rr := range batch {
			soa, isSOA := rr.(*dns.SOA)
			isZoneSOA := isSOA && strings.EqualFold(soa.Hdr.Name, fuzzZone)
			if first && i == 0 {
				if !isZoneSOA || soa.Serial != serial {
					t.Fatalf("full zone starts with %v, want the SOA at %d", rr, serial)
				}
				continue
			}
			if isZoneSOA {
				t.Fatalf("the zone's SOA %v inside the records", rr)
			}
		}
		first = false
	}
}

// fuzzSession is a session whose connection is the fuzz input.
func fuzzSession(stream []byte) *session {
	var id uint16
	if len(stream) >= 4 {
		id = binary.BigEndian.Uint16(stream[2:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		client:  &Client{StallTimeout: time.Second, MaxRecords: 500, MaxBytes: 1 << 20},
		ctx:     ctx,
		cancel:  cancel,
		conn:    &stoppableConn{Conn: nopConn{}, stop: func() bool { return false }},
		in:      transferReaders.Get(bytes.NewReader(stream)),
		readers: transferReaders,
		zone:    fuzzZone,
		master:  netip.MustParseAddrPort("192.0.2.53:53"),
		id:      id,
	}
}

// openingSOA finds the first answer record of the stream, as the decoder sees it.
func openingSOA(stream []byte) (*dns.SOA, bool) {
	for len(stream) >= 2 {
		n := int(binary.BigEndian.Uint16(stream))
		if len(stream) < 2+n {
			return nil, false
		}
		m := new(dns.Msg)
		if m.Unpack(stream[2:2+n]) != nil {
			return nil, false
		}
		if len(m.Answer) > 0 {
			soa, ok := m.Answer[0].(*dns.SOA)
			return soa, ok
		}
		stream = stream[2+n:]
	}
	return nil, false
}

// nopConn is the connection of a fuzzed session: reads come from the session's buffer.
type nopConn struct{ net.Conn }

func (nopConn) SetReadDeadline(time.Time) error { return nil }
func (nopConn) Close() error                    { return nil }

// TestStreamReadAfterFailure: a transfer cut short fails, and reading on after that fails
// again with a clear error (the session's read buffer went back to its pool at the first
// failure, so a read must not reach it).
func TestStreamReadAfterFailure(t *testing.T) {
	m := new(dns.Msg)
	m.Id, m.Response = 7, true
	soa, _ := dns.NewRR(fuzzZone + " 300 IN SOA ns1." + fuzzZone + " admin." + fuzzZone + " 9 3600 600 86400 300")
	a, _ := dns.NewRR("www." + fuzzZone + " 300 IN A 192.0.2.1")
	m.Answer = []dns.RR{soa, a}
	packed, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	s := fuzzSession(append(binary.BigEndian.AppendUint16(nil, uint16(len(packed))), packed...)) // no closing SOA
	first, err := s.read()
	if err != nil {
		t.Fatal(err)
	}
	st, err := newStream(s, "AXFR", first.Answer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(); err != nil { // the records of the first message
		t.Fatal(err)
	}
	if _, err := st.Next(); !errors.Is(err, errPrimaryClosed) {
		t.Fatalf("transfer cut short: got %v, want %v", err, errPrimaryClosed)
	}
	if _, err := st.Next(); !errors.Is(err, errSessionClosed) {
		t.Fatalf("read after the failure: got %v, want %v", err, errSessionClosed)
	}
}

package zonediff_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

// sink is a backend that reads what it is given and keeps only the serial: the cost
// measured is zonediff's own.
type sink struct{ serial uint32 }

func (s *sink) Serial(context.Context, string) (uint32, error) { return s.serial, nil }
func (s *sink) Create(ctx context.Context, z string, src backend.Source) error {
	return s.drain(src)
}
func (s *sink) Replace(ctx context.Context, z string, src backend.Source) error {
	return s.drain(src)
}
func (s *sink) Delete(context.Context, string) error    { return nil }
func (s *sink) Zones(context.Context) ([]string, error) { return nil, nil }
func (s *sink) Apply(_ context.Context, _ string, cs *backend.ChangeSet) error {
	s.serial = cs.To()
	return nil
}
func (s *sink) drain(src backend.Source) error {
	for {
		batch, err := src.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if soa, ok := batch[0].(*dns.SOA); ok {
			s.serial = soa.Serial
		}
	}
}

// genSource streams a zone of n A records from index first, made as they are read, so
// the benchmark's heap holds one batch like a transfer does.
type genSource struct {
	serial   uint32
	next, to int
	started  bool
}

func bigZone(serial uint32, first, n int) func() backend.Source {
	return func() backend.Source { return &genSource{serial: serial, next: first, to: first + n} }
}

func (g *genSource) Next() ([]dns.RR, error) {
	var batch []dns.RR
	if !g.started {
		g.started = true
		batch = append(batch, backendtest.Zone(zone, g.serial, 0)...)
	}
	for ; g.next < g.to && len(batch) < 500; g.next++ {
		i := g.next
		batch = append(batch, &dns.A{Hdr: dns.RR_Header{Name: "r" + strconv.Itoa(i) + "." + zone, Rrtype: dns.TypeA,
			Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))})
	}
	if len(batch) == 0 {
		return nil, io.EOF
	}
	return batch, nil
}

const benchRecords = 1_000_000

func BenchmarkFull(b *testing.B) {
	v1, v2 := bigZone(1, 0, benchRecords), bigZone(2, 5, benchRecords)
	b.Run("drain-only", func(b *testing.B) {
		for b.Loop() {
			(&sink{}).drain(v1())
		}
	})
	b.Run("create-with-index", func(b *testing.B) {
		idx, _ := zonediff.Open(b.TempDir(), 0.3)
		for b.Loop() {
			if _, err := idx.Full(b.Context(), &sink{}, zone, false, 0, v1()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("diff-10", func(b *testing.B) {
		idx, _ := zonediff.Open(b.TempDir(), 0.3)
		s := &sink{}
		idx.Full(b.Context(), s, zone, false, 0, v1())
		for b.Loop() {
			b.StopTimer()
			idx.Full(b.Context(), s, zone, true, 2, v1()) // back to v1 (a diff)
			b.StartTimer()
			res, err := idx.Full(b.Context(), s, zone, true, 1, v2())
			if err != nil || res.Apply != "diff" {
				b.Fatal(res, err)
			}
		}
	})
}

package zonediff_test

import (
	"context"
	"io"
	"runtime/metrics"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/file"
	"github.com/dnsagent/dnsagent/backend/zonediff"
	"github.com/dnsagent/dnsagent/tests/harness"
)

// wireZone is a zone as a primary sends it: compressed messages of about 16 KB, the SOA
// first and last, records as harness.GenerateZone makes them (the bench's zones).
type wireZone struct {
	msgs [][]byte
}

func packZone(tb testing.TB, z harness.Zone) wireZone {
	zp := dns.NewZoneParser(strings.NewReader(z.Text()), "", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		tb.Fatal(err)
	}
	rrs = append(rrs, rrs[0])
	var w wireZone
	for len(rrs) > 0 {
		n := min(len(rrs), 350)
		m := new(dns.Msg)
		m.Response, m.Compress, m.Answer = true, true, rrs[:n]
		b, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		w.msgs, rrs = append(w.msgs, b), rrs[n:]
	}
	return w
}

// source unpacks the messages one at a time, as the transfer client does, and drops the
// closing SOA.
func (w wireZone) source() backend.Source { return &wireSource{msgs: w.msgs} }

type wireSource struct {
	msgs [][]byte
}

func (s *wireSource) Next() ([]dns.RR, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := new(dns.Msg)
	if err := m.Unpack(s.msgs[0]); err != nil {
		return nil, err
	}
	s.msgs = s.msgs[1:]
	rrs := m.Answer
	if len(s.msgs) == 0 {
		rrs = rrs[:len(rrs)-1]
	}
	return rrs, nil
}

// BenchmarkFileDiff measures the file backend's side of acceptance 4 of issue 13 in one
// process, each operation beside the raw read of the same messages, so the ratios hold on
// a loaded machine: "raw" unpacks the zone and discards it (the bench's limit), "create"
// writes a new zone with its index, "diff" applies a 10-record change delivered as the
// full zone. The ratio metrics are the operation's time over the raw read's.
func BenchmarkFileDiff(b *testing.B) {
	b.Run("100k", func(b *testing.B) { benchmarkFileDiff(b, 100_000) })
	b.Run("1M", func(b *testing.B) { benchmarkFileDiff(b, 1_000_000) })
}

func benchmarkFileDiff(b *testing.B, n int) {
	name := "bench.example."
	z1 := harness.NewZone(name, 1, n)
	z2 := z1.Next(5, 5)
	v1, v2 := packZone(b, z1), packZone(b, z2)
	be, err := file.New(file.Config{ZoneFilePath: b.TempDir(), FileMode: 0o644, CommandTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	idx, err := zonediff.Open(b.TempDir(), zonediff.DefaultMaxRatio)
	if err != nil {
		b.Fatal(err)
	}
	served := &servedAt{Backend: be}
	var raw, create, diff time.Duration
	var rawCPU, createCPU, diffCPU time.Duration // CPU time of the process: less moved by other load
	var peak, peakOver uint64                    // the live Go heap during a diff, and its growth over the heap before
	for b.Loop() {
		start, cpu := time.Now(), cpuTime()
		src := v1.source()
		for _, err := src.Next(); err == nil; _, err = src.Next() {
		}
		raw += time.Since(start)
		rawCPU += cpuTime() - cpu

		be.Delete(b.Context(), name) //nolint:errcheck // absent the first time
		start, cpu = time.Now(), cpuTime()
		if res, err := idx.Full(b.Context(), served, name, false, 0, v1.source()); err != nil || res.Apply != "create" {
			b.Fatal(res, err)
		}
		create += served.at.Sub(start)
		createCPU += served.cpu - cpu

		base := heapBytes()
		stop := samplePeakHeap(&peak)
		start, cpu = time.Now(), cpuTime()
		if res, err := idx.Full(b.Context(), served, name, true, 1, v2.source()); err != nil || res.Apply != "diff" {
			b.Fatal(res, err)
		}
		diff += served.at.Sub(start)
		diffCPU += served.cpu - cpu
		stop()
		peakOver = max(peakOver, peak-base)
	}
	b.ReportMetric(float64(create)/float64(raw), "create/raw")
	b.ReportMetric(float64(diff)/float64(raw), "diff/raw")
	b.ReportMetric(float64(createCPU)/float64(rawCPU), "create-cpu/raw")
	b.ReportMetric(float64(diffCPU)/float64(rawCPU), "diff-cpu/raw")
	b.ReportMetric(float64(raw.Microseconds())/1000/float64(b.N), "raw-ms")
	b.ReportMetric(float64(peakOver)/(1<<20), "diff-heap-MiB")
}

// servedAt notes when the new zone file is in place: what the bench times, the index
// written after it left out.
type servedAt struct {
	*file.Backend
	at  time.Time
	cpu time.Duration
}

func (s *servedAt) done() { s.at, s.cpu = time.Now(), cpuTime() }

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck // cannot fail with these arguments
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (s *servedAt) Create(ctx context.Context, zone string, src backend.Source) error {
	err := s.Backend.Create(ctx, zone, src)
	s.done()
	return err
}

func (s *servedAt) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	err := s.Backend.Apply(ctx, zone, cs)
	s.done()
	return err
}

// heapBytes is the live Go heap as the last GC marked it: what the code retains, whatever
// the GC pacing (the benchmark itself holds both versions' messages, which would pace it).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// samplePeakHeap keeps the largest heapBytes in *peak, every millisecond, until stop.
func samplePeakHeap(peak *uint64) (stop func()) {
	*peak = heapBytes()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				*peak = max(*peak, heapBytes())
			}
		}
	}()
	return func() { close(done); <-finished }
}

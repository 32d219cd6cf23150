package tests

// Bounded under attack (issue 14, acceptance 1, 2 and 5): UDP floods at the highest rate
// a local sender reaches, a slowloris from 200 loopback sources, EDNS errors.

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

const (
	floodFor           = 6 * time.Second
	floodMaxGoroutines = 400      // the gate's 128 slots, the engine's jobs, the agent's own
	floodMaxRSSBytes   = 64 << 20 // acceptance 1
	floodInTime        = 0.8      // share of the allowed source's NOTIFYs answered within 100 ms here; the 95% target is measured by make bench (bench/FLOOD.md) on a quiet machine
)

// Acceptance 1, short: refused NOTIFYs from 127.0.0.2, then CREATEs of zones no primary
// serves from 127.0.0.3 (allowed), each as fast as two sockets send, while 127.0.0.1
// notifies 10 times a second. The goroutines stay under a fixed bound, RSS under 64 MiB,
// the allowed NOTIFYs are answered within 100 ms, and the failed CREATEs make a few
// sampled log lines with a count, not one line each (acceptance 5).
func TestSecurityFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024100101, 50)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1, 127.0.0.3"})
	create(t, a, 0x3001)
	if t.Failed() {
		t.FailNow()
	}
	for _, tc := range []struct {
		name, source string
		kind         string
	}{
		{"refused NOTIFYs", "127.0.0.2", "notify"},
		{"CREATEs of unknown zones", "127.0.0.3", "create"},
	} {
		mark := len(a.Output())
		rep, err := harness.Flood{Agent: a.Addr(), Metrics: a.Config.MetricsListen, PID: a.PID(),
			Source: tc.source, Sockets: 1, Kind: tc.kind,
			ProbeSource: "127.0.0.1", ProbeZone: zone, ProbeEvery: 100 * time.Millisecond, Deadline: 100 * time.Millisecond,
			For: floodFor}.Run(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		a.CheckAlive(t)
		t.Logf("%s: %d sent (%.0f/s); probes %d, %d within 100 ms, %d lost, p50 %v p99 %v worst %v; goroutines %d before, peak %d; RSS %.1f MiB before, peak %.1f MiB; %d dropped by the kernel",
			tc.name, rep.Sent, rep.Rate(), rep.Probes, rep.InTime, rep.Lost, rep.P50, rep.P99, rep.Worst,
			rep.GoroutinesBefore, rep.PeakGoroutines, float64(rep.RSSBefore)/(1<<20), float64(rep.PeakRSS)/(1<<20), rep.KernelDrops)
		t.Logf("%s: dropped by the gate so far: %v from allowed sources (over the per-source rates or queue), %v from others",
			tc.name, metricValue(t, a.Config.MetricsListen, `dnsagent_udp_dropped_total{queue="allowed"}`)+
				metricValue(t, a.Config.MetricsListen, `dnsagent_rate_limited_total{kind="udp"}`)+
				metricValue(t, a.Config.MetricsListen, `dnsagent_rate_limited_total{kind="udp_command"}`),
			metricValue(t, a.Config.MetricsListen, `dnsagent_udp_dropped_total{queue="others"}`))
		for _, f := range rep.Failures {
			t.Errorf("%s: %s", tc.name, f)
		}
		if rep.InTimeShare() < floodInTime {
			t.Errorf("%s: %d of %d NOTIFYs from the allowed source answered within 100 ms; want %.0f%%",
				tc.name, rep.InTime, rep.Probes, floodInTime*100)
		}
		if rep.PeakGoroutines > floodMaxGoroutines {
			t.Errorf("%s: %d goroutines at the peak; want at most %d", tc.name, rep.PeakGoroutines, floodMaxGoroutines)
		}
		if !harness.AgentRaced() && rep.PeakRSS > floodMaxRSSBytes {
			t.Errorf("%s: peak RSS %.1f MiB; want under 64 MiB", tc.name, float64(rep.PeakRSS)/(1<<20))
		}
		if tc.source != "127.0.0.3" {
			continue
		}
		var lines []string
		for _, line := range strings.Split(since(a.Output(), mark), "\n") {
			if strings.Contains(line, "flood.test") && strings.Contains(line, "WARN") {
				lines = append(lines, line)
			}
		}
		t.Logf("%d WARN lines about the failed CREATEs", len(lines))
		if len(lines) == 0 || len(lines) > 10 || !strings.Contains(strings.Join(lines, "\n"), "failures_since_last_line") {
			t.Errorf("%d WARN lines about %d failed CREATEs; want a few sampled lines with failures_since_last_line:\n%s",
				len(lines), rep.Sent, strings.Join(lines, "\n"))
		}
	}
}

// EDNS per RFC 6891: two OPT records, or an OPT outside the additional section, is FORMERR
// (§6.1.1); a version above 0 is BADVERS, told in an OPT of version 0 (§6.1.3). The
// NOTIFY is not acted on. A well-formed EDNS NOTIFY is still acknowledged, with an OPT.
func TestEDNSChecks(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024100101, 5)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"})
	create(t, a, 0x3001)
	opt := func(version uint8) *dns.OPT {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.SetVersion(version)
		return o
	}
	for _, tc := range []struct {
		name    string
		edit    func(m *dns.Msg)
		rcode   int
		wantOPT bool
	}{
		{"one OPT", func(m *dns.Msg) { m.Extra = []dns.RR{opt(0)} }, dns.RcodeSuccess, true},
		{"two OPTs", func(m *dns.Msg) { m.Extra = []dns.RR{opt(0), opt(0)} }, dns.RcodeFormatError, true},
		{"OPT in the answer section", func(m *dns.Msg) { m.Answer = []dns.RR{opt(0)} }, dns.RcodeFormatError, false},
		{"OPT in the authority section", func(m *dns.Msg) { m.Ns = []dns.RR{opt(0)} }, dns.RcodeFormatError, false},
		{"EDNS version 1", func(m *dns.Msg) { m.Extra = []dns.RR{opt(1)} }, dns.RcodeBadVers, true},
	} {
		for _, network := range []string{"udp", "tcp"} {
			m := new(dns.Msg)
			m.SetNotify(zone)
			tc.edit(m)
			r, err := harness.Exchange(network, a.Addr(), m, 3*time.Second)
			if err != nil {
				t.Errorf("%s over %s: %v", tc.name, network, err)
				continue
			}
			o := r.IsEdns0()
			if r.Rcode != tc.rcode || (o != nil) != tc.wantOPT {
				t.Errorf("%s over %s: rcode %d, OPT %v; want %d (%s), OPT %v", tc.name, network,
					r.Rcode, o != nil, tc.rcode, tc.name, tc.wantOPT)
				continue
			}
			if o != nil && o.Version() != 0 {
				t.Errorf("%s over %s: reply OPT version %d, want 0", tc.name, network, o.Version())
			}
			if r.Authoritative != (tc.rcode == dns.RcodeSuccess) {
				t.Errorf("%s over %s: AA %v", tc.name, network, r.Authoritative)
			}
		}
	}
}

// Acceptance 2: a slowloris from 200 loopback addresses outside allow_notify, each
// renewing its connection as soon as the agent drops it and sending half a length prefix
// on it, while 127.0.0.1 sends a NOTIFY over TCP every 100 ms: every one is answered.
// Strangers hold at most a tenth of tcp_backlog, so the allowed source always gets a slot.
func TestSecuritySlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024100101, 5)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", TCPRecvTimeout: "2"})
	create(t, a, 0x3001)
	if t.Failed() {
		t.FailNow()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var opened atomic.Int64
	for i := range 200 {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 1+byte(i/250), 2+byte(i%250))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: src, Timeout: time.Second}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", a.Addr())
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				opened.Add(1)
				c.Write([]byte{0}) // half a length prefix, then nothing
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				c.Read(make([]byte, 1)) // until the agent closes it
				c.Close()
			}
		}()
	}
	answered, sent := 0, 0
	var worst time.Duration
	for i := 0; ctx.Err() == nil; i++ {
		time.Sleep(100 * time.Millisecond)
		req := harness.NotifyMsg(uint16(0x6000+i), zone, false)
		t0 := time.Now()
		r, err := harness.ExchangeTCPFrom("127.0.0.1", a.Addr(), req, 2*time.Second)
		sent++
		if err != nil {
			t.Errorf("TCP NOTIFY %d from the allowed source: %v", i, err)
			continue
		}
		if string(r) != string(harness.Reply(req, 0xa400)) {
			t.Errorf("TCP NOTIFY %d: %s", i, harness.DescribeReply(r))
			continue
		}
		answered++
		worst = max(worst, time.Since(t0))
	}
	cancel()
	wg.Wait()
	a.CheckAlive(t)
	t.Logf("slowloris: %d connections opened by 200 sources in 5 s; allowed TCP NOTIFYs: %d of %d answered, worst %v",
		opened.Load(), answered, sent, worst)
	if opened.Load() < 400 {
		t.Errorf("test setup: only %d slowloris connections opened", opened.Load())
	}
}

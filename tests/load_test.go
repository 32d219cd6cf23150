package tests

// A bounded load test on loopback (tracker issue 7, acceptance 3): a flood of NOTIFYs from
// a refused source while an allowed source notifies, commands and queries go on.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

// Flood parameters: acceptance 3 of issue 7.
const (
	floodPackets  = 50000
	floodDuration = 10 * time.Second
	floodSockets  = 4
	floodP99      = 250 * time.Millisecond // a bound a busy CI machine keeps; the latency target itself is measured by make bench (bench/FLOOD.md)
	floodMaxRSS   = 100 << 20              // bytes
	floodRSSGrow  = 16 << 20               // allowed growth of the peak from the first half to the second
)

// metricValue sums the samples of a metric whose line starts with prefix on /metrics.
func metricValue(t *testing.T, metricsAddr, prefix string) float64 {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// flood sends n copies of a NOTIFY (ids varying) from src to addr, paced evenly over d on
// floodSockets sockets, and drains the replies. It returns the number sent and answered.
func flood(t *testing.T, src, addr string, n int, d time.Duration, stop <-chan struct{}) (sent, answered int64) {
	t.Helper()
	var wg sync.WaitGroup
	var nSent, nAnswered atomic.Int64
	start := time.Now()
	for s := range floodSockets {
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
		if err != nil {
			t.Fatalf("flood socket: %v", err)
		}
		share := n / floodSockets
		wg.Add(2)
		go func() { // replies: counted, so the kernel never has to drop them
			defer wg.Done()
			buf := make([]byte, 512)
			for {
				conn.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := conn.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() && nSent.Load() < int64(n) {
						continue
					}
					return
				}
				nAnswered.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			defer func() {
				time.Sleep(500 * time.Millisecond) // late replies
				conn.Close()
			}()
			msg := harness.NotifyMsg(0, zone, false)
			for i := 0; i < share; {
				due := int(float64(share) * float64(time.Since(start)) / float64(d))
				for ; i < share && i <= due; i++ {
					msg[0], msg[1] = byte(s), byte(i)
					if _, err := conn.Write(msg); err == nil {
						nSent.Add(1)
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	return nSent.Load(), nAnswered.Load()
}

// Acceptance 3: 50,000 NOTIFYs from a refused source (127.0.0.2; allow_notify is
// 127.0.0.1) within 10 s. Meanwhile NOTIFYs from the allowed source are acknowledged within
// 50 ms at p99, CREATE (idempotent) and relayed queries are answered, the agent's memory
// stays flat (peak RSS under 100 MiB, not growing from the first half to the second), and
// the flood makes a handful of log lines, not one per packet; the refusals are counted.
func TestSecurityAT3NotifyFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	// Not parallel: the latencies are measured on an otherwise idle machine.
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024100101, 50)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: p.Addr()})
	create(t, a, 0x3001)
	if t.Failed() {
		t.FailNow()
	}
	pid := a.PID()
	rss0, _, err := harness.ProcMemory(pid)
	if err != nil {
		t.Fatalf("reading the agent's memory: %v", err)
	}
	refused0 := metricValue(t, a.Config.MetricsListen, `dnsagent_refused_total{reason="acl"}`)
	logMark := len(a.Output())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var (
		mu        sync.Mutex
		latencies []time.Duration
		lost      int
		failures  []string
		rssFirst  int64 // peak VmRSS in the first half of the flood
		rssSecond int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	every := func(interval time.Duration, f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
					f(i)
				}
			}
		}()
	}
	started := time.Now()
	// The allowed source notifies every 20 ms and measures each round trip.
	every(20*time.Millisecond, func(i int) {
		req := harness.NotifyMsg(uint16(0x4000+i), zone, i%2 == 0)
		flags := uint16(0xa400)
		if i%2 == 0 {
			flags = 0xa500
		}
		t0 := time.Now()
		r, err := harness.ExchangeUDP(a.Addr(), req, time.Second)
		rtt := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			lost++
			return
		}
		latencies = append(latencies, rtt)
		if string(r) != string(harness.Reply(req, flags)) {
			if len(failures) < 20 {
				failures = append(failures, "NOTIFY from the allowed source: "+harness.DescribeReply(r))
			}
		}
	})
	// Commands: a CREATE of the zone it holds (NOERROR+AA), every 250 ms, UDP and TCP.
	every(250*time.Millisecond, func(i int) {
		req := harness.CreateMsg(uint16(0x5000+i), zone)
		var r []byte
		var err error
		if i%2 == 0 {
			r, err = harness.ExchangeUDP(a.Addr(), req, 3*time.Second)
		} else {
			r, err = harness.ExchangeTCP(a.Addr(), req, 3*time.Second)
		}
		if err != nil || string(r) != string(harness.Reply(req, 0xf400)) {
			fail("CREATE during the flood: %v %s", err, harness.DescribeReply(r))
		}
	})
	// Queries relayed to the destination, every 100 ms, UDP and TCP.
	every(100*time.Millisecond, func(i int) {
		q := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
		network := "udp"
		if i%3 == 0 {
			network = "tcp"
		}
		r, err := harness.Exchange(network, a.Addr(), q, 3*time.Second)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Id != q.Id {
			fail("%s query during the flood: %v %v", network, err, r)
		}
	})
	// Memory, every 100 ms.
	every(100*time.Millisecond, func(int) {
		rss, _, err := harness.ProcMemory(pid)
		if err != nil {
			fail("reading /proc/%d/status: %v", pid, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if time.Since(started) < floodDuration/2 {
			rssFirst = max(rssFirst, rss)
		} else {
			rssSecond = max(rssSecond, rss)
		}
	})

	sent, answered := flood(t, "127.0.0.2", a.Addr(), floodPackets, floodDuration, stop)
	floodTook := time.Since(started)
	close(stop)
	wg.Wait()
	_, hwm, err := harness.ProcMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	a.CheckAlive(t)

	refused := metricValue(t, a.Config.MetricsListen, `dnsagent_refused_total{reason="acl"}`) - refused0
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	var p50, p99, worst time.Duration
	if n := len(latencies); n > 0 {
		p50, p99, worst = latencies[n/2], latencies[(n*99+99)/100-1], latencies[n-1]
	}
	logLines := 0
	for _, line := range strings.Split(since(a.Output(), logMark), "\n") {
		if strings.Contains(line, "127.0.0.2") {
			logLines++
		}
	}
	t.Logf("flood: %d NOTIFYs from 127.0.0.2 sent in %v (%d answered REFUSED, %v counted as refused by acl)",
		sent, floodTook.Round(time.Millisecond), answered, refused)
	t.Logf("allowed NOTIFYs: %d answered, %d lost; latency p50 %v, p99 %v, worst %v",
		len(latencies), lost, p50, p99, worst)
	t.Logf("agent memory: VmRSS %.1f MiB before, peak %.1f MiB in the first half, %.1f MiB in the second; VmHWM %.1f MiB",
		float64(rss0)/(1<<20), float64(rssFirst)/(1<<20), float64(rssSecond)/(1<<20), float64(hwm)/(1<<20))
	t.Logf("log lines about 127.0.0.2 during the flood: %d", logLines)

	if sent < floodPackets*95/100 || floodTook > floodDuration+3*time.Second {
		t.Errorf("test setup: sent %d of %d NOTIFYs in %v", sent, floodPackets, floodTook)
	}
	if len(latencies) < 100 {
		t.Errorf("only %d allowed NOTIFYs were answered", len(latencies))
	}
	if lost > len(latencies)/100 {
		t.Errorf("%d of %d allowed NOTIFYs got no reply within 1 s", lost, lost+len(latencies))
	}
	if p99 > floodP99 {
		t.Errorf("allowed NOTIFYs: p99 %v, want <= %v", p99, floodP99)
	}
	for _, f := range failures {
		t.Error(f)
	}
	switch {
	case harness.AgentRaced():
		t.Logf("memory bounds not checked: the race detector's shadow memory multiplies the agent's")
	case hwm > floodMaxRSS:
		t.Errorf("peak RSS (VmHWM) %.1f MiB, want < %d MiB", float64(hwm)/(1<<20), floodMaxRSS>>20)
	case rssSecond > rssFirst+floodRSSGrow:
		t.Errorf("RSS grew from a peak of %.1f MiB in the first half to %.1f MiB in the second", float64(rssFirst)/(1<<20), float64(rssSecond)/(1<<20))
	}
	if logLines == 0 || logLines > 5 {
		t.Errorf("%d log lines about the refused source for %d packets; want a few sampled lines (one per source per interval)", logLines, sent)
	}
	if refused < float64(answered)*0.99 || refused > float64(sent) {
		t.Errorf("refusals counted: %v, for %d sent and %d answered", refused, sent, answered)
	}
}

// The rate limit (rate_limit_notify) on an allowed source that floods: past its bucket
// the NOTIFYs are dropped unanswered (no reflection) and counted, one log line tells the
// operator, and another allowed source, with its own bucket, is still answered at once.
func TestSecurityRateLimitedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	harness.Require(t, "named", "rndc")
	const rate, packets, d = 50, 10000, 2 * time.Second
	z := harness.NewZone(zone, 2024100201, 20)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1, 127.0.0.3",
		Service: map[string]string{"rate_limit_notify": strconv.Itoa(rate)}})
	create(t, a, 0x3101)
	limited0 := metricValue(t, a.Config.MetricsListen, `dnsagent_rate_limited_total{kind="notify"}`)
	logMark := len(a.Output())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered, lost atomic.Int64
	var worst atomic.Int64
	wg.Add(1)
	go func() { // the other allowed source, every 40 ms: below the rate, always answered
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond):
			}
			req := harness.NotifyMsg(uint16(0x6000+i), zone, false)
			t0 := time.Now()
			r, err := harness.ExchangeUDP(a.Addr(), req, time.Second)
			if err != nil || string(r) != string(harness.Reply(req, 0xa400)) {
				lost.Add(1)
				continue
			}
			answered.Add(1)
			if rtt := int64(time.Since(t0)); rtt > worst.Load() {
				worst.Store(rtt)
			}
		}
	}()
	sent, replies := flood(t, "127.0.0.3", a.Addr(), packets, d, stop)
	close(stop)
	wg.Wait()
	a.CheckAlive(t)
	limited := metricValue(t, a.Config.MetricsListen, `dnsagent_rate_limited_total{kind="notify"}`) - limited0
	// The UDP gate's queue may drop some too before rate_limit_notify sees them: also counted.
	limited += metricValue(t, a.Config.MetricsListen, `dnsagent_udp_dropped_total{queue="allowed"}`)
	logLines := 0
	for _, line := range strings.Split(since(a.Output(), logMark), "\n") {
		if strings.Contains(line, "rate limit") && strings.Contains(line, "127.0.0.3") {
			logLines++
		}
	}
	t.Logf("127.0.0.3 sent %d NOTIFYs in %v at rate_limit_notify = %d: %d answered, %v dropped and counted, %d log lines",
		sent, d, rate, replies, limited, logLines)
	t.Logf("127.0.0.1 meanwhile: %d answered (worst %v), %d lost", answered.Load(), time.Duration(worst.Load()), lost.Load())

	// A full bucket (one second's worth), then the rate; generous for scheduling.
	if maxAnswered := int64(rate + rate*int(d/time.Second+2)); replies > maxAnswered || replies < rate/2 {
		t.Errorf("%d of %d NOTIFYs from the flooding source answered; want about %d (burst %d, then %d/s)",
			replies, sent, rate+rate*int(d/time.Second), rate, rate)
	}
	// Datagrams the kernel dropped before the agent read them are nobody's to count.
	if dropped := float64(sent - replies); limited > dropped || limited < dropped*0.75 {
		t.Errorf("%v drops counted in rate_limited_total for %v unanswered (sent %d, answered %d)", limited, dropped, sent, replies)
	}
	if logLines < 1 || logLines > 3 {
		t.Errorf("%d rate-limit log lines about 127.0.0.3; want one per interval", logLines)
	}
	if lost.Load() > 0 || answered.Load() < 20 {
		t.Errorf("the other allowed source: %d answered, %d lost; want every NOTIFY answered", answered.Load(), lost.Load())
	}
}

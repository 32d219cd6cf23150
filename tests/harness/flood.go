package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Flood describes a UDP flood against an agent while an allowed source probes it with
// NOTIFYs (issue 14, acceptance 1): the flood from Source as fast as Sockets sockets send,
// the probe every ProbeEvery from ProbeSource for ProbeZone, which the agent holds.
type Flood struct {
	Agent       string // the agent's DNS address
	Metrics     string // its metrics_listen, for go_goroutines
	PID         int    // its process, for VmRSS
	Source      string
	Sockets     int
	Kind        string // "notify": NOTIFYs of ProbeZone; "create": CREATEs of distinct zones no primary serves
	ProbeSource string
	ProbeZone   string
	ProbeEvery  time.Duration
	Deadline    time.Duration // a probe answered later than this counts as late
	For         time.Duration
}

// FloodReport is what a flood measured.
type FloodReport struct {
	Sent               int64 // datagrams of the flood sent
	Took               time.Duration
	Probes, InTime     int // probes sent, and answered within the deadline
	P50, P99, Worst    time.Duration
	Lost               int   // probes with no answer within 1 s
	PeakGoroutines     int   // go_goroutines, sampled every 250 ms
	PeakRSS, RSSBefore int64 // VmRSS, sampled every 100 ms (bytes)
	GoroutinesBefore   int
	KernelDrops        int64 // UDP datagrams the kernel dropped for a full socket buffer (whole host)
	Failures           []string
}

// Rate is the flood's datagrams per second.
func (r FloodReport) Rate() float64 { return float64(r.Sent) / r.Took.Seconds() }

// InTimeShare is the share of probes answered within the deadline.
func (r FloodReport) InTimeShare() float64 {
	if r.Probes == 0 {
		return 0
	}
	return float64(r.InTime) / float64(r.Probes)
}

// Run floods, probes and samples until f.For has passed.
func (f Flood) Run(ctx context.Context) (FloodReport, error) {
	var rep FloodReport
	var err error
	if rep.RSSBefore, _, err = ProcMemory(f.PID); err != nil {
		return rep, err
	}
	if rep.GoroutinesBefore, err = Goroutines(f.Metrics); err != nil {
		return rep, err
	}
	drops0 := socketDrops(f.Agent)
	outer := ctx
	ctx, cancel := context.WithTimeout(ctx, f.For)
	defer cancel()
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
	)
	every := func(d time.Duration, fn func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(d)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					fn(i)
				}
			}
		}()
	}
	every(f.ProbeEvery, func(i int) {
		wg.Add(1)
		go func() { // a late answer must not delay the next probe
			defer wg.Done()
			req := NotifyMsg(uint16(0x7000+i), f.ProbeZone, false)
			t0 := time.Now()
			r, err := ExchangeUDPFrom(f.ProbeSource, f.Agent, req, time.Second)
			rtt := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			rep.Probes++
			switch {
			case err != nil:
				rep.Lost++
			case string(r) != string(Reply(req, 0xa400)):
				rep.Failures = append(rep.Failures, "probe NOTIFY: "+DescribeReply(r))
			default:
				latencies = append(latencies, rtt)
				if rtt <= f.Deadline {
					rep.InTime++
				}
			}
		}()
	})
	every(100*time.Millisecond, func(int) {
		if rss, _, err := ProcMemory(f.PID); err == nil {
			mu.Lock()
			rep.PeakRSS = max(rep.PeakRSS, rss)
			mu.Unlock()
		}
	})
	every(250*time.Millisecond, func(int) {
		if n, err := Goroutines(f.Metrics); err == nil {
			mu.Lock()
			rep.PeakGoroutines = max(rep.PeakGoroutines, n)
			mu.Unlock()
		}
	})
	start := time.Now()
	rep.Sent, err = floodUDP(outer, f) // it stops itself after f.For
	cancel()
	rep.Took = time.Since(start)
	wg.Wait()
	rep.KernelDrops = socketDrops(f.Agent) - drops0
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		rep.P50, rep.P99, rep.Worst = latencies[n/2], latencies[(n*99+99)/100-1], latencies[n-1]
	}
	return rep, err
}

// floodUDP runs the flooder command (in a process of its own, so that this one keeps its
// CPU for the probes) for f.For and returns how many datagrams it sent.
func floodUDP(ctx context.Context, f Flood) (int64, error) {
	bin, err := flooderBinary()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, bin, "-src", f.Source, "-addr", f.Agent, "-sockets", strconv.Itoa(f.Sockets),
		"-for", f.For.String(), "-kind", f.Kind, "-zone", f.ProbeZone)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("flooder: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

var flooder struct {
	once sync.Once
	bin  string
	err  error
}

// RemoveFlooder removes the flooder's build; RunMain calls it.
func RemoveFlooder() {
	if flooder.bin != "" {
		os.RemoveAll(filepath.Dir(flooder.bin))
	}
}

// flooderBinary builds ./flooder once per test binary, beside the agent's build.
func flooderBinary() (string, error) {
	flooder.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			flooder.err = err
			return
		}
		dir, err := os.MkdirTemp("", "dnsagent-flooder-")
		if err != nil {
			flooder.err = err
			return
		}
		flooder.bin = filepath.Join(dir, "flooder")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", flooder.bin, "github.com/dnsagent/dnsagent/tests/harness/flooder")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			flooder.err = fmt.Errorf("go build flooder: %v\n%s", err, out)
		}
	})
	return flooder.bin, flooder.err
}

// ProcMemory reads VmRSS and VmHWM (bytes) from /proc/PID/status.
func ProcMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// Goroutines reads go_goroutines from the agent's /metrics.
func Goroutines(metricsAddr string) (int, error) {
	v, err := MetricValue(metricsAddr, "go_goroutines")
	return int(v), err
}

// MetricValue reads one sample from the agent's /metrics: series is the metric's name with
// its labels as the exposition format writes them; a counter not incremented yet is 0.
func MetricValue(metricsAddr, series string) (float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if strings.Contains(series, "{") {
		return 0, nil
	}
	return 0, fmt.Errorf("no %s on %s/metrics", series, metricsAddr)
}

// socketDrops reads how many datagrams the kernel dropped for a full receive buffer on
// the IPv4 UDP socket bound to addr (the drops column of /proc/net/udp); -1 if it cannot.
func socketDrops(addr string) int64 {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return -1
	}
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) <= 12 {
			continue
		}
		if local, err := procAddr(fields[1]); err == nil && local == ap {
			n, _ := strconv.ParseInt(fields[len(fields)-1], 10, 64)
			return n
		}
	}
	return -1
}

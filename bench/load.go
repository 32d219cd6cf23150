package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// notifyResult is the acknowledgement latency of NOTIFYs offered at a fixed rate.
type notifyResult struct {
	Condition          string
	Rate               int
	Duration           time.Duration
	Sent, Answered     int
	P50, P99, Max      time.Duration
	DuringTransfer     bool
	Dropped            int64 // datagrams the kernel dropped at the agent's full UDP receive buffer
	TransfersCompleted int   // full transfers completed during the window
}

// notifyLoad sends NOTIFYs (as Designate's worker builds them) for zones, round robin, to
// addr at rate per second for d, open loop: each is sent at its time whether or not the
// earlier ones were answered. Latency is from send to the matching reply; a NOTIFY
// without a reply 2 s after the end counts as lost (it is left out of the percentiles and
// shows as Sent - Answered).
func notifyLoad(addr string, zones []string, rate int, d time.Duration) (notifyResult, error) {
	const sockets = 8
	type sock struct {
		c    *net.UDPConn
		sent [65536]atomic.Int64 // send time (UnixNano) per message ID
		lat  []time.Duration
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return notifyResult{}, err
	}
	ss := make([]*sock, sockets)
	var wg sync.WaitGroup
	for i := range ss {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return notifyResult{}, err
		}
		c.SetReadBuffer(4 << 20)
		s := &sock{c: c}
		ss[i] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				if n < 2 {
					continue
				}
				if at := s.sent[binary.BigEndian.Uint16(buf)].Swap(0); at != 0 {
					s.lat = append(s.lat, time.Duration(now-at))
				}
			}
		}()
	}
	msgs := make([][]byte, len(zones))
	for i, z := range zones {
		msgs[i] = harness.NotifyMsg(0, z, true)
	}
	total := int(float64(rate) * d.Seconds())
	dropsBefore := udpDrops(raddr.Port)
	start := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	for sent < total {
		due := min(total, int(float64(rate)*time.Since(start).Seconds())+1)
		for ; sent < due; sent++ {
			s := ss[sent%sockets]
			id := uint16(sent / sockets)
			m := msgs[sent%len(msgs)]
			binary.BigEndian.PutUint16(m, id)
			s.sent[id].Store(time.Now().UnixNano())
			s.c.Write(m)
		}
		<-tick.C
	}
	tick.Stop()
	time.Sleep(2 * time.Second)
	for _, s := range ss {
		s.c.Close()
	}
	wg.Wait()
	var lat []time.Duration
	for _, s := range ss {
		lat = append(lat, s.lat...)
	}
	slices.Sort(lat)
	r := notifyResult{Rate: rate, Duration: d, Sent: sent, Answered: len(lat), Dropped: udpDrops(raddr.Port) - dropsBefore}
	if len(lat) > 0 {
		r.P50, r.P99, r.Max = percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
	}
	return r, nil
}

// udpDrops sums the drops column of /proc/net/udp for the sockets bound to
// 127.0.0.1:port: datagrams the kernel threw away because the socket's receive buffer was
// full, i.e. the process did not read them fast enough.
func udpDrops(port int) int64 {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	var sum int64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 13 || f[1] != local {
			continue
		}
		n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		sum += n
	}
	return sum
}

// qpsResult is closed-loop query throughput against one address.
type qpsResult struct {
	Path     string
	Clients  int
	Queries  int
	Duration time.Duration
	P50, P99 time.Duration
	Errors   int
}

func (r qpsResult) QPS() float64 { return float64(r.Queries) / r.Duration.Seconds() }

// queryAllow is the allow_query of an agent queryLoad queries: its workers' addresses.
const queryAllow = "127.0.0.0/8"

// queryLoad runs workers closed loops (send a query, wait for its answer, next) against
// addr for d, cycling through the questions. Only NOERROR answers count as answered; no
// answer within 1 s or another rcode counts as an error. Worker w sends from 127.0.0.(w+1),
// as that many hosts would: from one address, 16 clients pass the agent's fixed limit of
// 50,000 datagrams a second per source (README, Security) once it relays that fast, and
// the agent, unlike named and dnsdist, would drop the excess (queryAllow must allow them).
func queryLoad(addr string, questions []dns.Question, workers int, d time.Duration) (qpsResult, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return qpsResult{}, err
	}
	msgs := make([][]byte, len(questions))
	for i, q := range questions {
		m := new(dns.Msg)
		m.SetQuestion(q.Name, q.Qtype)
		m.RecursionDesired = false
		if msgs[i], err = m.Pack(); err != nil {
			return qpsResult{}, err
		}
	}
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(w+1))}, raddr)
		if err != nil {
			return qpsResult{}, err
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 65535)
			var lat []time.Duration
			e := 0
			for i := w; time.Now().Before(deadline); i += workers {
				m := slices.Clone(msgs[i%len(msgs)])
				id := uint16(i)
				binary.BigEndian.PutUint16(m, id)
				t0 := time.Now()
				c.SetDeadline(t0.Add(time.Second))
				if _, err := c.Write(m); err != nil {
					e++
					continue
				}
				for {
					n, err := c.Read(buf)
					if err != nil {
						e++
						break
					}
					if n >= 4 && binary.BigEndian.Uint16(buf) == id {
						if buf[3]&0x0f != dns.RcodeSuccess { // every name asked exists: SERVFAIL, REFUSED are failures
							e++
						} else {
							lat = append(lat, time.Since(t0))
						}
						break
					}
				}
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(all)
	return qpsResult{Path: addr, Queries: len(all), Duration: el, P50: percentile(all, 50), P99: percentile(all, 99), Errors: errs}, nil
}

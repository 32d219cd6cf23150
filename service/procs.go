package service

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// SetProcs sets how many threads run the agent's Go code at once (GOMAXPROCS), once at
// start, before the service is made from cfg: cfg.CPUs when set; else Go's own number
// when the GOMAXPROCS environment variable is set; else one while no zone is worked on
// and Go's own number (the CPUs, or the container's CPU quota) while some zone is
// (procs). It returns how many, for the log.
func SetProcs(cfg *Config) string {
	found := runtime.GOMAXPROCS(0) // Go's own: nothing changed it yet
	switch {
	case cfg.CPUs > 0:
		runtime.GOMAXPROCS(cfg.CPUs)
		return strconv.Itoa(cfg.CPUs)
	case os.Getenv("GOMAXPROCS") != "" || found == 1:
		return strconv.Itoa(found)
	}
	p := &procs{idleAfter: procsIdleAfter}
	cfg.Transfer.Working = p.begin
	p.lower()
	return fmt.Sprintf("1 while idle, %d while zones are worked on", found)
}

// procsIdleAfter is how long after the last zone work the agent goes back to one P.
const procsIdleAfter = time.Second

// procs runs the agent's Go code on one P while no zone is worked on, and on Go's own
// number of them while a check, transfer, apply or delete runs and for idleAfter after
// the last one ended.
//
// Why one: while idle the agent relays queries and answers NOTIFYs, which wait on the
// network, and Go keeps an idle P's thread looking for work for a while after each
// wake-up (runtime/proc.go, spinning Ms), on a CPU the DNS server beside the agent then
// lacks. On 2 cores shared with named one P relayed 0.93–1.07× of dnsdist's throughput
// round by round (mean 1.00×), two 0.87–1.07× (mean 0.94×). Why not one always: a
// transfer of a 1M-record zone then holds the one P for up to a time slice at a time, and
// NOTIFYs were acknowledged in 36 ms at p99 against 4.3 ms with two, and 4.0 ms with
// procs (bench/README.md, Passthrough).
type procs struct {
	idleAfter time.Duration

	mu    sync.Mutex
	work  int         // zone work running
	one   bool        // GOMAXPROCS is 1: kept, not asked, since Go's default (SetDefaultGOMAXPROCS) reads the cgroup's CPU limit each time
	timer *time.Timer // lowers to one P idleAfter after the work ended
}

// begin is Config.Working: zone work begins.
func (p *procs) begin() (done func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.work++
	if p.one {
		runtime.SetDefaultGOMAXPROCS()
		p.one = false
	}
	var once sync.Once
	return func() { once.Do(p.end) }
}

func (p *procs) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.work--; p.work > 0 {
		return
	}
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleAfter, p.lower)
	} else {
		p.timer.Reset(p.idleAfter)
	}
}

// lower goes to one P unless zone work runs.
func (p *procs) lower() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.work == 0 && !p.one {
		runtime.GOMAXPROCS(1)
		p.one = true
	}
}

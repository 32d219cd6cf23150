package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// buildBinaries compiles the agent (cmd/agent, what the tables measure) and agentprof
// (the same agent with profiling hooks) into dir.
func buildBinaries(dir string) (agent, prof string, err error) {
	root, err := moduleRoot()
	if err != nil {
		return "", "", err
	}
	agent, prof = filepath.Join(dir, "dnsagent"), filepath.Join(dir, "agentprof")
	for _, b := range [][2]string{{agent, "./cmd/agent"}, {prof, "./bench/agentprof"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	return agent, prof, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}

// agent is a running agent process. Unlike harness.Agent it exposes its PID (for VmHWM)
// and can run any binary (the profiling build), with extra environment, and be restarted
// on another configuration.
type agent struct {
	t    testing.TB
	name string
	bin  string
	env  []string
	cfg  harness.AgentConfig
	cmd  *exec.Cmd
	out  *harness.Buffer
	done chan struct{}
	once sync.Once
}

// startAgent writes cfg (JSON logs, harness defaults) and starts bin on it, waiting until
// it answers DNS. It is stopped in t.Cleanup or by stop.
func startAgent(t testing.TB, name, bin string, cfg harness.AgentConfig, env ...string) *agent {
	t.Helper()
	a := &agent{t: t, name: name, bin: bin, env: env}
	a.launch(cfg)
	t.Cleanup(func() { a.stop() })
	return a
}

// launch starts the process on cfg (its defaults filled in and kept, so a relaunch keeps
// the ports and the diff index directory).
func (a *agent) launch(cfg harness.AgentConfig) {
	t := a.t
	t.Helper()
	cfg.Service = maps.Clone(cfg.Service)
	if cfg.Service == nil {
		cfg.Service = map[string]string{}
	}
	cfg.Service["log_format"] = "json"
	path := harness.WriteAgentConfig(t, &cfg)
	a.cfg, a.out, a.done, a.once = cfg, harness.NewBuffer(4<<20), make(chan struct{}), sync.Once{}
	a.cmd = relayCommand(a.bin, "--config", path)
	a.cmd.Dir = filepath.Dir(path)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(strings.ToUpper(e), "DNSAGENT_") {
			a.cmd.Env = append(a.cmd.Env, e)
		}
	}
	a.cmd.Env = append(a.cmd.Env, a.env...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.SysProcAttr = harness.ChildAttr()
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start agent %s: %v", a.name, err)
	}
	cmd, done := a.cmd, a.done
	go func() { cmd.Wait(); close(done) }()
	probe := harness.QueryMsg(0x5eed, ".", dns.TypeSOA, false)
	ok := harness.Eventually(15*time.Second, 20*time.Millisecond, func() bool {
		if a.exited() {
			return true
		}
		_, err := harness.ExchangeUDP(a.addr(), probe, 300*time.Millisecond)
		return err == nil
	})
	if a.exited() || !ok {
		t.Fatalf("agent %s did not start; config:\n%s\noutput:\n%s", a.name, cfg.Text(), a.out)
	}
}

// restart stops the agent and starts it again on its configuration changed by edit
// (same ports, same backend, same diff index directory unless edit changes them).
func (a *agent) restart(edit func(*harness.AgentConfig)) {
	a.stop()
	cfg := a.cfg
	cfg.Service = maps.Clone(cfg.Service)
	cfg.Backend = maps.Clone(cfg.Backend)
	if edit != nil {
		edit(&cfg)
	}
	a.launch(cfg)
}

func (a *agent) addr() string { return strings.Split(a.cfg.Listen, ",")[0] }
func (a *agent) pid() int     { return a.cmd.Process.Pid }

func (a *agent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

func (a *agent) stop() {
	a.once.Do(func() {
		if a.exited() {
			a.t.Errorf("agent %s died: %v\n%s", a.name, a.cmd.ProcessState, a.out)
			return
		}
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
		if a.t.Failed() || harness.Verbose() {
			a.t.Logf("agent %s output:\n%s", a.name, a.out)
		}
	})
}

// checkAlive fails the test with the agent's output if it is gone.
func (a *agent) checkAlive() {
	if a.exited() {
		a.t.Fatalf("agent %s exited: %v\n%s", a.name, a.cmd.ProcessState, a.out)
	}
}

// command sends an opcode-14 CREATE or DELETE (or a NOTIFY) and returns the reply's
// rcode, or -1 without a reply within timeout.
func (a *agent) send(msg []byte, timeout time.Duration) int {
	r, err := harness.ExchangeUDP(a.addr(), msg, timeout)
	if err != nil || len(r) < 4 {
		return -1
	}
	return int(r[3] & 0x0f)
}

var msgID atomic.Uint32

func nextID() uint16 { return uint16(msgID.Add(1)) }

func (a *agent) create(zone string, timeout time.Duration) int {
	return a.send(harness.CreateMsg(nextID(), zone), timeout)
}

// delete sends a DELETE, again (as a DNS client would) while no reply comes: under a
// NOTIFY flood the agent's socket may drop a datagram.
func (a *agent) delete(zone string) int {
	msg := harness.DeleteMsg(nextID(), zone)
	rc := -1
	for i := 0; i < 5 && rc == -1; i++ {
		rc = a.send(msg, 6*time.Second)
	}
	return rc
}

func (a *agent) notify(zone string) int {
	return a.send(harness.NotifyMsg(nextID(), zone, true), 5*time.Second)
}

// lastTransfer is the agent's /zones/NAME view of the last transfer.
type lastTransfer struct {
	Type     string `json:"type"`
	Records  int    `json:"records"`
	Bytes    int    `json:"bytes"`
	Transfer int64  `json:"transfer_ns"`
	Apply    int64  `json:"apply_ns"`
	Result   string `json:"result"`
	To       uint32 `json:"serial_to"`
	// How a full zone was applied (issue 13): diff, replace, create or ixfr, and why.
	Path       string `json:"apply"`
	PathReason string `json:"apply_reason"`
	Deleted    int    `json:"deleted"`
	Added      int    `json:"added"`
}

func (a *agent) lastTransfer(zone string) (lastTransfer, error) {
	var st struct {
		Last *lastTransfer `json:"last_transfer"`
	}
	resp, err := http.Get("http://" + a.cfg.MetricsListen + "/zones/" + strings.TrimSuffix(zone, "."))
	if err != nil {
		return lastTransfer{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return lastTransfer{}, err
	}
	if st.Last == nil {
		return lastTransfer{}, fmt.Errorf("no last_transfer for %s", zone)
	}
	return *st.Last, nil
}

// transferTo waits (5 s at most) until the agent's status shows the transfer to serial:
// a target may serve the new serial a moment before the agent records its summary.
func (a *agent) transferTo(zone string, serial uint32) (lastTransfer, bool) {
	var lt lastTransfer
	ok := harness.Eventually(5*time.Second, 10*time.Millisecond, func() bool {
		var err error
		lt, err = a.lastTransfer(zone)
		return err == nil && lt.To == serial && lt.Result == "applied"
	})
	return lt, ok
}

// heapInuse scrapes go_memstats_heap_inuse_bytes from /metrics.
func (a *agent) heapInuse(c *http.Client) (int64, error) {
	resp, err := c.Get("http://" + a.cfg.MetricsListen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no go_memstats_heap_inuse_bytes in /metrics")
}

// memWatch follows one case: the peak RSS is reset at the start (clear_refs 5) and read
// from VmHWM at the end; the Go heap in use is scraped every 50 ms in between.
type memWatch struct {
	a      *agent
	cancel context.CancelFunc
	done   chan struct{}
	peak   atomic.Int64
}

func watchMemory(a *agent) *memWatch {
	// Resetting the high-water mark needs to own the process (we do: we started it).
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", a.pid()), []byte("5"), 0)
	ctx, cancel := context.WithCancel(context.Background())
	w := &memWatch{a: a, cancel: cancel, done: make(chan struct{})}
	// Uncompressed: gzip would make each scrape cost the agent more CPU.
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := a.heapInuse(c); err == nil && v > w.peak.Load() {
				w.peak.Store(v)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop returns the peak RSS and the peak Go heap in use, in bytes.
func (w *memWatch) stop() (rss, heap int64) {
	w.cancel()
	<-w.done
	return vmHWM(w.a.pid()), w.peak.Load()
}

// vmHWM is the process's peak resident set size, in bytes (0 if unknown).
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := strings.Fields(string(v))
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// readHead returns up to n bytes from the start of a file.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := io.ReadFull(f, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return buf[:k], err
}

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// AgentPackage is the import path of the agent's main package.
const AgentPackage = "github.com/dnsagent/dnsagent/cmd/agent"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// AgentRaced tells whether the agent runs under the race detector (DNSAGENT_TEST_RACE),
// whose shadow memory multiplies its RSS: memory bounds are not checked then.
func AgentRaced() bool { return os.Getenv("DNSAGENT_TEST_RACE") != "" }

// AgentBinary builds the agent once per test binary and returns its path. A failed build
// fails every test that needs the agent, with the compiler's output.
// DNSAGENT_TEST_BINARY names a prebuilt binary to use instead; DNSAGENT_TEST_RACE=1
// builds it with the race detector.
func AgentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("DNSAGENT_TEST_BINARY"); p != "" {
			buildBin = p // a prebuilt binary, e.g. from CI
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "dnsagent-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(buildDir, "dnsagent")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		args := []string{"build", "-o", buildBin}
		if AgentRaced() {
			args = append(args, "-race") // the agent under the race detector
		}
		cmd := exec.CommandContext(ctx, "go", append(args, AgentPackage)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", AgentPackage, err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("%v", buildErr)
	}
	return buildBin
}

// RunMain is TestMain's body for packages using the agent: it runs the tests, then
// removes the binary built by AgentBinary.
func RunMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	RemoveFlooder()
	os.Exit(code)
}

// AgentConfig is the agent's configuration. Empty fields get the defaults noted; Raw,
// when set, is written as it is and everything else is ignored.
type AgentConfig struct {
	Listen           string // default 127.0.0.1:<FreePort>
	Masters          string // comma-separated
	AllowNotify      string // written even when empty ("allow_notify =")
	AllowQuery       string // written only when set (the agent's default is allow_notify)
	BackendDriver    string // default "file"
	NotifyDelay      string // default "0"
	Workers          string // default "8"
	CreateTimeout    string // default "20"
	TCPRecvTimeout   string // default "0.5"
	ZoneFilePath     string // default: a new t.TempDir()
	QueryDestination string // written even when empty
	MetricsListen    string // default: a free loopback port (the agent's default 9358 would clash)
	DiffIndexDir     string // default: a new t.TempDir()
	// Service and Backend add or override options of [service:agent] and
	// [agent:<driver>]; a key mapped to "-" is left out altogether.
	Service map[string]string
	Backend map[string]string
	// Sections are appended verbatim (e.g. [tsig:NAME] sections).
	Sections string
	// Raw replaces the whole file.
	Raw string
}

// defaults fills empty fields; it allocates a port and a directory when needed.
func (c *AgentConfig) defaults(t testing.TB) {
	if c.Raw != "" {
		return
	}
	if c.Listen == "" {
		c.Listen = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	}
	if c.BackendDriver == "" {
		c.BackendDriver = "file"
	}
	if c.NotifyDelay == "" {
		c.NotifyDelay = "0"
	}
	if c.Workers == "" {
		c.Workers = "8"
	}
	if c.CreateTimeout == "" {
		c.CreateTimeout = "20"
	}
	if c.TCPRecvTimeout == "" {
		c.TCPRecvTimeout = "0.5"
	}
	if c.ZoneFilePath == "" {
		c.ZoneFilePath = t.TempDir()
	}
	if c.MetricsListen == "" {
		c.MetricsListen = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	}
	if c.DiffIndexDir == "" {
		c.DiffIndexDir = t.TempDir()
	}
}

// Text renders the INI file.
func (c *AgentConfig) Text() string {
	if c.Raw != "" {
		return c.Raw
	}
	type kv struct{ k, v string }
	render := func(b *strings.Builder, section string, base []kv, extra map[string]string) {
		fmt.Fprintf(b, "[%s]\n", section)
		seen := map[string]bool{}
		for _, e := range base {
			v := e.v
			if o, ok := extra[e.k]; ok {
				v = o
			}
			seen[e.k] = true
			if v == "-" {
				continue
			}
			fmt.Fprintf(b, "%s = %s\n", e.k, v)
		}
		keys := make([]string, 0, len(extra))
		for k := range extra {
			if !seen[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if extra[k] != "-" {
				fmt.Fprintf(b, "%s = %s\n", k, extra[k])
			}
		}
		b.WriteString("\n")
	}
	var b strings.Builder
	svc := []kv{
		{"listen", c.Listen},
		{"masters", c.Masters},
		{"allow_notify", c.AllowNotify},
	}
	if c.AllowQuery != "" {
		svc = append(svc, kv{"allow_query", c.AllowQuery})
	}
	svc = append(svc,
		kv{"backend_driver", c.BackendDriver},
		kv{"notify_delay", c.NotifyDelay},
		kv{"workers", c.Workers},
		kv{"create_timeout", c.CreateTimeout},
		kv{"tcp_recv_timeout", c.TCPRecvTimeout},
		kv{"metrics_listen", c.MetricsListen},
		kv{"diff_index_dir", c.DiffIndexDir},
	)
	render(&b, "service:agent", svc, c.Service)
	render(&b, "agent:"+c.BackendDriver, []kv{
		{"zone_file_path", c.ZoneFilePath},
		{"query_destination", c.QueryDestination},
	}, c.Backend)
	if c.Sections != "" {
		b.WriteString(c.Sections)
		b.WriteString("\n")
	}
	return b.String()
}

// WriteAgentConfig fills the defaults of cfg, writes it to a new file and returns the path.
func WriteAgentConfig(t testing.TB, cfg *AgentConfig) string {
	t.Helper()
	cfg.defaults(t)
	path := filepath.Join(t.TempDir(), "dnsagent.conf")
	if err := os.WriteFile(path, []byte(cfg.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agentEnv is the environment of the agent: ours without DNSAGENT_* overrides, so the
// configuration file is the whole truth.
func agentEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(strings.ToUpper(e), "DNSAGENT_") {
			env = append(env, e)
		}
	}
	return env
}

// Agent is a running dnsagent process.
type Agent struct {
	t       testing.TB
	Config  AgentConfig
	Path    string // configuration file
	cmd     *exec.Cmd
	out     *Buffer
	done    chan struct{}
	mu      sync.Mutex
	stopped bool // we asked it to stop
	exiting bool // a test sent a signal that ends it
}

// StartAgent writes cfg (defaults filled), starts `dnsagent --config FILE` and waits (10 s
// at most) until it answers a DNS query over UDP on its first listen address. The process
// is stopped in t.Cleanup (SIGTERM, SIGKILL after 5 s); its output is printed if the test
// failed, and an agent that died on its own before the cleanup fails the test.
func StartAgent(t testing.TB, cfg AgentConfig) *Agent {
	t.Helper()
	bin := AgentBinary(t)
	a := &Agent{t: t, out: NewBuffer(1 << 20)}
	a.Path = WriteAgentConfig(t, &cfg)
	a.Config = cfg
	a.cmd = exec.Command(bin, "--config", a.Path)
	a.cmd.Env = agentEnv()
	a.cmd.Dir = filepath.Dir(a.Path)
	a.done = startProcess(t, a.cmd, a.out)
	t.Cleanup(a.stop)

	addr := a.Addr()
	probe := QueryMsg(0x5eed, ".", dns.TypeSOA, false)
	ready := Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		if a.Exited() {
			return true
		}
		_, err := ExchangeUDP(addr, probe, 300*time.Millisecond)
		return err == nil
	})
	if a.Exited() {
		t.Fatalf("agent exited during start-up (%v); config:\n%s\noutput:\n%s", a.cmd.ProcessState, cfg.Text(), a.out)
	}
	if !ready {
		t.Fatalf("agent not answering on %s (UDP) after 10 s; config:\n%s\noutput:\n%s", addr, cfg.Text(), a.out)
	}
	return a
}

// Addr is the agent's first listen address.
func (a *Agent) Addr() string {
	return strings.TrimSpace(strings.Split(a.Config.Listen, ",")[0])
}

// Dir is the zone_file_path.
func (a *Agent) Dir() string { return a.Config.ZoneFilePath }

// PID is the agent's process id, e.g. to read its memory use from /proc/PID/status.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// ZoneFile is the path of zone's file under zone_file_path.
func (a *Agent) ZoneFile(zone string) string {
	return filepath.Join(a.Config.ZoneFilePath, ZoneFileName(zone))
}

// Output is what the agent logged so far.
func (a *Agent) Output() string { return a.out.String() }

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// CheckAlive fails the test if the agent is no longer running.
func (a *Agent) CheckAlive(t testing.TB) {
	t.Helper()
	if a.Exited() {
		t.Fatalf("agent is not running any more: %v; output:\n%s", a.cmd.ProcessState, a.out)
	}
}

// Signal sends sig to the agent. After SIGTERM, SIGINT or SIGKILL its exit is expected.
func (a *Agent) Signal(sig syscall.Signal) error {
	if sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGKILL {
		a.mu.Lock()
		a.exiting = true
		a.mu.Unlock()
	}
	return a.cmd.Process.Signal(sig)
}

func (a *Agent) stop() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	a.mu.Unlock()
	if a.Exited() && !a.exiting {
		a.t.Errorf("agent died before the end of the test: %v", a.cmd.ProcessState)
		a.t.Logf("agent output:\n%s", a.out)
		return
	}
	if terminate(a.cmd, a.done, 5*time.Second) {
		a.t.Logf("agent ignored SIGTERM for 5 s; killing it")
	}
	if strings.Contains(a.out.String(), "WARNING: DATA RACE") {
		a.t.Errorf("the race detector found a data race in the agent (see its output)")
	}
	if a.t.Failed() || Verbose() {
		a.t.Logf("agent (%s) exit %v; output:\n%s", a.Addr(), a.cmd.ProcessState, a.out)
	}
}

// RunAgentCommand runs the agent binary with args (bounded by timeout) and returns its
// exit code (-1 if it had to be killed at the timeout) and combined output.
func RunAgentCommand(t testing.TB, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	bin := AgentBinary(t)
	out := NewBuffer(1 << 20)
	cmd := exec.Command(bin, args...)
	cmd.Env = agentEnv()
	done := startProcess(t, cmd, out)
	select {
	case <-done:
	case <-time.After(timeout):
		kill(cmd, done)
		return -1, out.String()
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// CheckConfig writes cfg and runs `dnsagent check-config --config FILE`, returning the exit
// code and the output.
func CheckConfig(t testing.TB, cfg AgentConfig) (int, string) {
	t.Helper()
	path := WriteAgentConfig(t, &cfg)
	return RunAgentCommand(t, 20*time.Second, "check-config", "--config", path)
}

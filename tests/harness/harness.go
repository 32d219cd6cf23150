// Package harness is the end-to-end test harness of dnsagent: private BIND primaries on
// random loopback ports, a fault-injecting TCP/UDP proxy, a runner for the agent binary,
// raw DNS client helpers, Designate message builders, a deterministic zone generator and
// helpers that compare zone contents as canonical record sets.
//
// It is an ordinary (non-test) package so the end-to-end tests of every backend can use it.
// Everything it starts is bound to loopback, bounded in time and stopped in t.Cleanup.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Verbose reports whether HARNESS_VERBOSE is set: the output of every named and agent is
// then logged at cleanup even when the test passed.
func Verbose() bool { return os.Getenv("HARNESS_VERBOSE") != "" }

// ci reports whether a missing tool must fail the test rather than skip it (SPEC §7).
func ci() bool { return os.Getenv("CI") == "true" }

// sbinDirs are searched after PATH: named and rndc live in /usr/sbin, which is not on the
// PATH of an ordinary user.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"}

// LookPath finds a binary on PATH or in the sbin directories; "" if it is nowhere.
func LookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Require makes sure every binary is installed. A missing one fails the test when CI=true
// and skips it otherwise. StartGalera and PDNSSchema skip the same way for the files they
// need; nothing else in the harness skips.
func Require(t testing.TB, binaries ...string) {
	t.Helper()
	var missing []string
	for _, b := range binaries {
		if LookPath(b) == "" {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	if ci() {
		t.Fatalf("required binaries not installed: %v (CI=true: a missing tool is a failure)", missing)
	}
	t.Skipf("required binaries not installed: %v", missing)
}

// mustLook is LookPath for a binary Require already checked.
func mustLook(t testing.TB, name string) string {
	t.Helper()
	Require(t, name)
	return LookPath(name)
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a loopback port that was free for both TCP and UDP on 127.0.0.1 when
// it was checked. A port is never handed out twice by one test binary, so tests running in
// parallel do not collide with each other. Ports are drawn below the kernel's ephemeral
// range, so the outgoing connections of the servers under test (SST, clients, transfers)
// cannot take one between this check and the server's bind.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	lo, hi := portRange()
	for i := 0; i < 200; i++ {
		port := lo + rand.IntN(hi-lo)
		if portsUsed[port] {
			continue
		}
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		portsUsed[port] = true
		return port
	}
	t.Fatalf("FreePort: no port in %d-%d free for both TCP and UDP after 200 attempts", lo, hi)
	return 0
}

// portRange is where FreePort draws from: the 12,000 ports below the start of
// net.ipv4.ip_local_port_range (32768 by default), never below 1024.
func portRange() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first > 2048 {
			hi = first
		}
	}
	return max(1024, hi-12000), hi
}

// listenBoth binds TCP and UDP on the same loopback port, retrying on a race with another
// process.
func listenBoth(t testing.TB) (net.Listener, net.PacketConn) {
	t.Helper()
	var lastErr error
	for i := 0; i < 20; i++ {
		port := FreePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		ul, err := net.ListenPacket("udp", addr)
		if err != nil {
			tl.Close()
			lastErr = err
			continue
		}
		return tl, ul
	}
	t.Fatalf("cannot bind TCP+UDP on a loopback port: %v", lastErr)
	return nil, nil
}

// Buffer is a goroutine-safe output sink for a child process, holding at most limit bytes
// (the head and the tail are kept when it overflows, and the agent's warnings and errors
// from the middle: a failure in a long run is otherwise lost with it).
type Buffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int
	kept    []string // warnings and errors among the dropped bytes, up to maxKept
	limit   int
}

// maxKept bounds the warning and error lines a Buffer keeps from the bytes it drops.
const maxKept = 100

// NewBuffer makes a Buffer keeping about limit bytes (default 1 MiB).
func NewBuffer(limit int) *Buffer {
	if limit <= 0 {
		limit = 1 << 20
	}
	return &Buffer{limit: limit}
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.limit/2 - b.head.Len(); room > 0 {
		k := min(room, len(p))
		b.head.Write(p[:k])
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if over := len(b.tail) - b.limit/2; over > 0 {
			b.keep(b.tail[:over])
			b.dropped += over
			b.tail = append(b.tail[:0], b.tail[over:]...)
		}
	}
	return n, nil
}

// keep notes the agent's warning and error lines (its log's level field) in dropped; a
// line cut where the drop begins or ends is kept as far as it goes.
func (b *Buffer) keep(dropped []byte) {
	for line := range bytes.Lines(dropped) {
		if len(b.kept) == maxKept {
			return
		}
		if bytes.Contains(line, []byte("\tWARN\t")) || bytes.Contains(line, []byte("\tERROR\t")) {
			b.kept = append(b.kept, string(bytes.TrimRight(line, "\n")))
		}
	}
}

// String returns the captured output.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return b.head.String() + string(b.tail)
	}
	kept := ""
	if len(b.kept) > 0 {
		kept = fmt.Sprintf(", with these warnings and errors (at most %d):\n%s\n...", maxKept, strings.Join(b.kept, "\n"))
	}
	return fmt.Sprintf("%s\n... [%d bytes dropped%s] ...\n%s", b.head.String(), b.dropped, kept, b.tail)
}

// Eventually polls cond every interval until it returns true or timeout passes; it
// returns whether cond became true. No fixed sleeps: the wait ends as soon as cond holds.
func Eventually(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// moduleRoot finds the directory holding go.mod, walking up from the working directory.
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
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// isClosed reports whether done, a process's exit channel, is closed.
func isClosed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// waitDelay bounds how long Wait waits, once a server the harness started has exited, for
// its output pipes to close: a child it left behind holding them (an SST helper, say) must
// not hang the test.
const waitDelay = 10 * time.Second

// killWait bounds the wait for a process killed with SIGKILL to be reaped: one stuck in
// the kernel (uninterruptible I/O on a loaded disk) must not hang the test binary.
const killWait = 30 * time.Second

// kill sends SIGKILL to the process group of cmd (started with Setpgid) and waits, at
// most killWait, until done is closed; it reports whether it was.
func kill(cmd *exec.Cmd, done <-chan struct{}) bool {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return true
	case <-time.After(killWait):
		return false
	}
}

// terminate asks a process the harness started (in its own process group) to end with
// SIGTERM and kills the group if it has not after grace; it returns once the process has
// exited (done closed), or killWait after the kill, and reports whether it had to be
// killed.
func terminate(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) (killed bool) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return false
	case <-time.After(grace):
		kill(cmd, done)
		return true
	}
}

// startProcess starts cmd (its program, arguments, Dir and Env set by the caller) with out
// as its stdout and stderr, in its own process group so that kill reaches whatever it
// starts, and with waitDelay; it fails the test if the program cannot start. A goroutine
// reaps it: the channel returned is closed once it has exited, cmd.ProcessState set.
// The process is killed when the test binary dies without its clean-ups (a -timeout
// panic, a crash, a closed output pipe): see ChildAttr.
func startProcess(t testing.TB, cmd *exec.Cmd, out *Buffer) chan struct{} {
	t.Helper()
	cmd.WaitDelay = waitDelay
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", filepath.Base(cmd.Path), err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	return done
}

// ChildAttr is how the harness and the benchmarks start a server: in its own process
// group (so a kill reaches whatever it starts), and killed by the kernel when the test
// binary dies (Linux's parent-death signal), so that a named, mariadbd or agent never
// outlives a test binary that could not run its clean-ups. The signal follows the thread
// that started the process (prctl(2), PR_SET_PDEATHSIG); Go keeps its threads for the
// process's life unless a goroutine locked to one exits, which nothing here does.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// RunTool runs a command-line tool (rndc, delv, named-checkzone...) for at most timeout
// and returns its combined output; a tool that hangs is killed and named in the error.
func RunTool(timeout time.Duration, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = waitDelay
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %v still running after %v: %w", filepath.Base(bin), args, timeout, err)
	}
	return string(out), err
}

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// dnsdistConf relays UDP and TCP queries on a loopback port to one server. No packet
// cache (none is configured unless asked for), so every query reaches named as through
// the agent; the server is declared up so no health-check traffic competes; no security
// polling (it would query the Internet).
const dnsdistConf = `setLocal("%s")
newServer({address="%s"}):setUp()
setSecurityPollSuffix("")
`

// startDnsdist starts dnsdist relaying to upstream and returns its address and pid, or ""
// (with a note) when dnsdist is not installed: the bench installs it (make bench-deps),
// the tests never need it. It is stopped in t.Cleanup.
func startDnsdist(t testing.TB, res *Results, upstream string) (string, int) {
	t.Helper()
	bin := harness.LookPath("dnsdist")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("dnsdist is not installed (make bench-deps)")
		}
		res.note("dnsdist is not installed (`make bench-deps`): no passthrough peer")
		return "", 0
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	dir := t.TempDir()
	conf := filepath.Join(dir, "dnsdist.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, dnsdistConf, addr, upstream), 0o644); err != nil {
		t.Fatal(err)
	}
	out := harness.NewBuffer(1 << 20)
	cmd := relayCommand(bin, "--supervised", "--disable-syslog", "-C", conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = harness.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsdist: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	probe := harness.QueryMsg(0x5eed, ".", dns.TypeSOA, false)
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		_, err := harness.ExchangeUDP(addr, probe, 300*time.Millisecond)
		return err == nil
	}) {
		t.Fatalf("dnsdist did not answer on %s:\n%s", addr, out)
	}
	return addr, cmd.Process.Pid
}

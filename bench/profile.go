package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// agentBin and profBin are built once by TestMain (bench_test.go) when the benchmarks are
// enabled; declared here, where profile.go uses them, so `go build ./...` builds bench too.
var agentBin, profBin string

// profiledAgent is agentprof with its CPU-profile toggle and pprof endpoint.
type profiledAgent struct {
	*agent
	cpuDir    string
	pprofAddr string
	toggles   int
}

func startProfiledAgent(t testing.TB, name string, cfg harness.AgentConfig) *profiledAgent {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	a := startAgent(t, name, profBin, cfg, "BENCH_CPUPROFILE_DIR="+dir, "BENCH_PPROF_LISTEN="+addr)
	return &profiledAgent{agent: a, cpuDir: dir, pprofAddr: addr}
}

// profileCase records a CPU profile of the agent while run runs, and the heap profile
// taken when the heap in use was largest, into out/NAME.cpu.pprof and out/NAME.heap.pprof,
// with `go tool pprof -top` summaries beside them.
func (pa *profiledAgent) profileCase(t testing.TB, out, name string, run func()) string {
	t.Helper()
	var (
		mu       sync.Mutex
		bestHeap []byte
		bestSize int64
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
		for {
			if v, err := pa.heapInuse(c); err == nil && v > bestSize {
				if prof, err := fetch(c, "http://"+pa.pprofAddr+"/debug/pprof/heap"); err == nil {
					mu.Lock()
					bestSize, bestHeap = v, prof
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	pa.cmd.Process.Signal(syscall.SIGUSR1)
	pa.toggles++
	start := time.Now()
	run()
	elapsed := time.Since(start)
	pa.cmd.Process.Signal(syscall.SIGUSR1)
	close(stop)
	<-sampled
	cpuFile := filepath.Join(pa.cpuDir, fmt.Sprintf("cpu-%d.pprof", pa.toggles))
	if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
		return strings.Contains(pa.out.String(), cpuFile)
	}) {
		t.Fatalf("no CPU profile %s written; agent output:\n%s", cpuFile, pa.out)
	}
	cpuOut := filepath.Join(out, name+".cpu.pprof")
	data, err := os.ReadFile(cpuFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpuOut, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\nwall %s, peak heap in use %s\n\n", name, fmtDur(elapsed), fmtMiB(bestSize))
	fmt.Fprintf(&b, "CPU, by cumulative time:\n\n```\n%s```\n\n", pprofTop(cpuOut, "-cum", "-nodecount=35"))
	fmt.Fprintf(&b, "CPU, by own time:\n\n```\n%s```\n\n", pprofTop(cpuOut, "-nodecount=20"))
	if bestHeap != nil {
		heapOut := filepath.Join(out, name+".heap.pprof")
		if err := os.WriteFile(heapOut, bestHeap, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "Heap in use at the peak:\n\n```\n%s```\n\n", pprofTop(heapOut, "-sample_index=inuse_space", "-nodecount=15"))
	}
	return b.String()
}

func fetch(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// pprofTop is `go tool pprof -top` of a profile, its header lines trimmed.
func pprofTop(profile string, args ...string) string {
	a := append([]string{"tool", "pprof", "-top"}, args...)
	a = append(a, profBin, profile)
	out, err := exec.Command("go", a...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// Profile runs the cases whose time goes somewhere worth seeing under the profiling build
// of the agent, and returns a Markdown report; profiles land in out.
func Profile(t *testing.T, n int, out string, cases map[string]bool) string {
	harness.Require(t, "named", "rndc", "pdns_server", "pdns_control", "mariadbd", "mariadb-install-db")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sizeRun{env: &env{t: t, opt: Options{Change: 5}, res: newResults(Options{})}, t: t, n: n, zone: zoneName(n)}
	s.z = harness.NewZone(s.zone, 1000, n)
	s.startPrimary()
	base := harness.AgentConfig{Masters: s.p.Addr(), AllowNotify: "127.0.0.1", AllowQuery: queryAllow}
	var report bytes.Buffer
	fmt.Fprintf(&report, "# Agent profiles, %s records\n\n%s, %s. Agent built from %s. Profiles: %s (`go tool pprof`). "+
		"Written by TestBenchProfile (bench/README.md): CPU profiles cover exactly one case; the agent's CPU only, so "+
		"time spent waiting for MariaDB or named shows as wall time above the samples.\n\n",
		sizeName(n), time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), builtFrom, out)
	name := func(c string) string { return c + "-" + sizeName(n) }
	wantServed := func(p serialProbe, serial uint32) {
		if _, err := waitFor(time.Now(), 30*time.Minute, servesSerial(p, serial)); err != nil {
			t.Fatal(err)
		}
	}
	change := func() {
		s.setZone(s.z.Next(s.opt.Change, s.opt.Change))
	}

	if cases["file"] || cases["notify"] {
		cfg := base
		cfg.ZoneFilePath = t.TempDir()
		a := startProfiledAgent(t, "file", cfg)
		probe := fileProbe(filepath.Join(cfg.ZoneFilePath, harness.ZoneFileName(s.zone)), s.zone)
		if cases["file"] {
			report.WriteString(a.profileCase(t, out, name("file-full"), func() {
				go a.create(s.zone, 10*time.Minute)
				wantServed(probe, s.z.Serial)
			}))
			change()
			report.WriteString(a.profileCase(t, out, name("file-change"), func() {
				a.notify(s.zone)
				wantServed(probe, s.z.Serial)
			}))
		}
		if cases["notify"] {
			for _, z := range notifyZones {
				a.create(z, 30*time.Second)
			}
			report.WriteString(a.profileCase(t, out, "notify-5000qps", func() {
				r, err := notifyLoad(a.addr(), notifyZones, 5000, 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&report, "NOTIFY load (idle agent): %d/%d answered, %d dropped at the agent's socket, p50 %s, p99 %s, max %s\n\n",
					r.Answered, r.Sent, r.Dropped, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.Max))
			}))
		}
	}
	if cases["bind9"] || cases["query"] {
		named := harness.StartBackendNamed(t, harness.BackendOptions{})
		a := startProfiledAgent(t, "bind9-update", bind9Config(base, named, "update"))
		probe := dnsProbe(named.Addr(), s.zone)
		if cases["bind9"] {
			report.WriteString(a.profileCase(t, out, name("bind9-update-full"), func() {
				go a.create(s.zone, 10*time.Minute)
				wantServed(probe, s.z.Serial)
			}))
			change()
			report.WriteString(a.profileCase(t, out, name("bind9-update-change"), func() {
				a.notify(s.zone)
				wantServed(probe, s.z.Serial)
			}))
		}
		if cases["query"] {
			if !cases["bind9"] {
				go a.create(s.zone, 10*time.Minute)
				wantServed(probe, s.z.Serial)
			}
			qs := questions(s.z, 2000)
			report.WriteString(a.profileCase(t, out, "passthrough", func() {
				r, _ := queryLoad(a.addr(), qs, 16, 5*time.Second)
				fmt.Fprintf(&report, "Passthrough: %.0f queries/s, p50 %s, p99 %s\n\n", r.QPS(), fmtDur(r.P50), fmtDur(r.P99))
			}))
		}
	}
	if cases["powerdns"] {
		m := harness.StartMariaDB(t)
		db := m.NewPDNSDatabase(t)
		pd := harness.StartPDNS(t, m, db, harness.PDNSOptions{})
		slow := enableSlowLog(t, m)
		cfg := base
		cfg.BackendDriver = "powerdns"
		cfg.QueryDestination = pd.Addr()
		cfg.Backend = map[string]string{"zone_file_path": "-", "dsn": m.DSN(db), "pdns_socket_dir": pd.SocketDir()}
		a := startProfiledAgent(t, "powerdns", cfg)
		probe := dnsProbe(pd.Addr(), s.zone)
		report.WriteString(a.profileCase(t, out, name("powerdns-full"), func() {
			go a.create(s.zone, 10*time.Minute)
			wantServed(probe, s.z.Serial)
		}))
		report.WriteString(slow.report("powerdns-full-" + sizeName(n)))
		change()
		report.WriteString(a.profileCase(t, out, name("powerdns-change"), func() {
			a.notify(s.zone)
			wantServed(probe, s.z.Serial)
		}))
		report.WriteString(slow.report("powerdns-change-" + sizeName(n)))
	}
	return report.String()
}

// slowLog is MariaDB's slow query log at a 10 ms threshold: where the database's time
// goes, which a CPU profile of the agent cannot show.
type slowLog struct {
	path   string
	offset int64
}

// enableSlowLog turns the log on for sessions opened from now on (long_query_time is
// copied into a session when it starts): call it before starting the agent.
func enableSlowLog(t testing.TB, m *harness.MariaDB) *slowLog {
	l := &slowLog{path: filepath.Join(t.TempDir(), "slow.log")}
	db := m.DB(t, "")
	for _, q := range []string{"SET GLOBAL slow_query_log_file = '" + l.path + "'", "SET GLOBAL long_query_time = 0.01",
		"SET GLOBAL slow_query_log = 1"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return l
}

// report sums the statements logged since the last report by their first words.
func (l *slowLog) report(name string) string {
	data, _ := os.ReadFile(l.path)
	if int64(len(data)) < l.offset {
		l.offset = 0
	}
	text := string(data[l.offset:])
	l.offset = int64(len(data))
	type agg struct {
		n        int
		total    float64
		examined int64
	}
	sums := map[string]*agg{}
	var order []string
	var qt float64
	var examined int64
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "# Query_time:"):
			f := strings.Fields(line)
			for i := 0; i+1 < len(f); i++ {
				switch f[i] {
				case "Query_time:":
					fmt.Sscan(f[i+1], &qt)
				case "Rows_examined:":
					fmt.Sscan(f[i+1], &examined)
				}
			}
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "SET timestamp") || strings.HasPrefix(line, "use "):
		default:
			if qt == 0 {
				continue
			}
			key := normalizeSQL(line)
			a := sums[key]
			if a == nil {
				a = &agg{}
				sums[key] = a
				order = append(order, key)
			}
			a.n++
			a.total += qt
			a.examined += examined
			qt, examined = 0, 0
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "MariaDB statements over 10 ms during %s:\n\n| statement (start) | count | total | rows examined |\n|---|---|---|---|\n", name)
	for _, k := range order {
		a := sums[k]
		fmt.Fprintf(&b, "| `%s` | %d | %.2f s | %d |\n", strings.ReplaceAll(k, "|", "\\|"), a.n, a.total, a.examined)
	}
	return b.String() + "\n"
}

var (
	sqlString = regexp.MustCompile(`'(?:[^'\\]|\\.)*'`)
	sqlNumber = regexp.MustCompile(`\b\d+\b`)
)

// normalizeSQL makes statements that differ only in their values one key: literals become
// ?, and everything after VALUES is left out.
func normalizeSQL(q string) string {
	if i := strings.Index(q, " VALUES "); i >= 0 {
		q = q[:i] + " VALUES …"
	}
	q = sqlNumber.ReplaceAllString(sqlString.ReplaceAllString(q, "?"), "?")
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 120 {
		q = q[:120] + "…"
	}
	return q
}

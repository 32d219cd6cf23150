package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonecompare"
	"github.com/dnsagent/dnsagent/backend/zonefile"
	"github.com/dnsagent/dnsagent/service"
	"github.com/dnsagent/dnsagent/transfer"
)

// verifyWorkers bounds the zones verify --all compares at once.
const verifyWorkers = 4

// toolArgs parses "ZONE [--config FILE]" (flags anywhere) for verify, dump and resync.
type toolArgs struct {
	config string
	all    bool
	zone   string
}

func parseToolArgs(cmd string, args []string, allowAll bool, stderr io.Writer) (toolArgs, bool) {
	flags := flag.NewFlagSet("dnsagent "+cmd, flag.ContinueOnError)
	flags.SetOutput(stderr)
	var t toolArgs
	flags.StringVar(&t.config, "config", "", "configuration file")
	if allowAll {
		flags.BoolVar(&t.all, "all", false, "every zone the backend holds")
	}
	var positional []string
	for len(args) > 0 {
		if err := flags.Parse(args); err != nil {
			return t, false
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		args = flags.Args()[1:]
	}
	switch {
	case t.all && len(positional) == 0:
	case !t.all && len(positional) == 1:
		t.zone = backend.CanonicalZone(positional[0])
		if err := backend.ValidateZoneName(t.zone); err != nil {
			fmt.Fprintf(stderr, "dnsagent %s: %v\n", cmd, err)
			return t, false
		}
	default:
		all := ""
		if allowAll {
			all = " | --all"
		}
		fmt.Fprintf(stderr, "usage: dnsagent %s ZONE%s [--config FILE]\n", cmd, all)
		return t, false
	}
	return t, true
}

// openTool loads the configuration and builds a transfer engine that is never started:
// it transfers and applies only what the command asks.
func openTool(cmd string, t toolArgs, stderr io.Writer) (*transfer.Manager, backend.Backend, bool) {
	path := t.config
	if path == "" {
		if _, err := os.Stat(defaultConfig); err == nil {
			path = defaultConfig
		}
	}
	cfg, be, err := service.LoadForTool(path)
	if err != nil {
		fmt.Fprintf(stderr, "dnsagent %s: configuration %s:\n%v\n", cmd, displayPath(path), err)
		return nil, nil, false
	}
	return transfer.NewManager(cfg.Transfer, be, zap.NewNop()), be, true
}

func toolContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// verifyCmd prints the difference between the backend's copy and the primary's zone.
// Exit 0: equal; 1: different; 2: error.
func verifyCmd(args []string, stdout, stderr io.Writer) int {
	t, ok := parseToolArgs("verify", args, true, stderr)
	if !ok {
		return 2
	}
	m, be, ok := openTool("verify", t, stderr)
	if !ok {
		return 2
	}
	defer m.Close()
	ctx, cancel := toolContext()
	defer cancel()
	if t.all {
		return verifyAll(ctx, m, be, stdout, stderr)
	}
	res, err := m.Verify(ctx, t.zone)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent verify:", err)
		return 2
	}
	res.Print(stdout)
	if res.Equal {
		return 0
	}
	return 1
}

// verifyAll checks every zone the backend holds, verifyWorkers at a time, and prints one
// line per zone that differs or fails; on a terminal a progress line counts the zones.
func verifyAll(ctx context.Context, m *transfer.Manager, be backend.Backend, stdout, stderr io.Writer) int {
	zones, err := be.Zones(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent verify:", err)
		return 2
	}
	progress := isTerminal(stderr)
	var (
		mu                   sync.Mutex
		done, differ, failed int
		wg                   sync.WaitGroup
	)
	work := make(chan string)
	for range verifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for zone := range work {
				res, err := m.Verify(ctx, zone)
				mu.Lock()
				done++
				if progress {
					fmt.Fprint(stderr, "\r\033[K")
				}
				switch {
				case err != nil:
					failed++
					fmt.Fprintf(stdout, "%s error: %v\n", zone, err)
				case !res.Equal:
					differ++
					fmt.Fprintf(stdout, "%s %s (serial %d here, %d on the primary)\n", zone, res.Summary(), res.HeldSerial, res.PrimarySerial)
				}
				if progress {
					fmt.Fprintf(stderr, "verified %d/%d zones, %d differ, %d failed", done, len(zones), differ, failed)
				}
				mu.Unlock()
			}
		}()
	}
	for _, zone := range zones {
		if ctx.Err() != nil {
			break
		}
		work <- zone
	}
	close(work)
	wg.Wait()
	if progress {
		fmt.Fprintln(stderr)
	}
	fmt.Fprintf(stdout, "%d zones: %d equal, %d differ, %d failed\n", len(zones), done-differ-failed, differ, failed)
	switch {
	case failed > 0 || ctx.Err() != nil:
		return 2
	case differ > 0:
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// dumpCmd writes the zone as the backend holds it, as a master file.
func dumpCmd(args []string, stdout, stderr io.Writer) int {
	t, ok := parseToolArgs("dump", args, false, stderr)
	if !ok {
		return 2
	}
	m, be, ok := openTool("dump", t, stderr)
	if !ok {
		return 2
	}
	m.Close()
	reader, ok := be.(backend.Reader)
	if !ok {
		fmt.Fprintln(stderr, "dnsagent dump:", transfer.ErrNoReader)
		return 2
	}
	ctx, cancel := toolContext()
	defer cancel()
	out := bufio.NewWriterSize(stdout, 256<<10)
	err := reader.Read(ctx, t.zone, func(batch []dns.RR) error { return zonefile.WriteRecords(out, batch) })
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent dump:", err)
		return 2
	}
	return 0
}

// resyncCmd forces a full transfer of the zone and applies what differs from the
// backend's real content. Exit 0 when done (whether or not anything changed), 2 on error.
func resyncCmd(args []string, stdout, stderr io.Writer) int {
	t, ok := parseToolArgs("resync", args, false, stderr)
	if !ok {
		return 2
	}
	m, _, ok := openTool("resync", t, stderr)
	if !ok {
		return 2
	}
	defer m.Close()
	ctx, cancel := toolContext()
	defer cancel()
	res, sum, err := m.Resync(ctx, t.zone)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent resync:", err)
		return 2
	}
	printResync(stdout, res, sum)
	return 0
}

// printResync says what a resync changed.
func printResync(w io.Writer, res *zonecompare.Result, sum *transfer.Summary) {
	if res != nil {
		res.Print(w)
	}
	switch sum.Path {
	case "none":
		fmt.Fprintf(w, "%s: nothing to repair, the backend holds serial %d as the primary serves it\n", sum.Zone, sum.To)
	case "diff":
		fmt.Fprintf(w, "%s: repaired: %d records deleted, %d added, serial %d -> %d (from %s)\n",
			sum.Zone, sum.Deleted, sum.Added, sum.From, sum.To, sum.Master)
	default:
		fmt.Fprintf(w, "%s: replaced with the primary's %d records (%s), serial %d -> %d (from %s)\n",
			sum.Zone, sum.Records, sum.PathReason, sum.From, sum.To, sum.Master)
	}
}

package powerdns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/internal/run"
)

// commandTimeout bounds every pdns_control and pdnsutil run.
const commandTimeout = 30 * time.Second

// runner runs a command (never through a shell) and returns its output; the seam that
// lets tests see which commands ran.
type runner func(ctx context.Context, argv []string) (string, error)

// control tells pdns_server about committed changes.
type control struct {
	run         runner
	pdnsControl []string // with --socket-dir; nil when disabled
	pdnsutil    []string // nil unless dnssec is on
	batches     *coalescer
}

func newControl(cfg Config, run runner) control {
	c := control{run: run, batches: &coalescer{}}
	if cfg.PDNSControlEnabled {
		c.pdnsControl = append([]string(nil), cfg.PDNSControl...)
		if cfg.PDNSSocketDir != "" {
			c.pdnsControl = append(c.pdnsControl, "--socket-dir="+cfg.PDNSSocketDir)
		}
	}
	if cfg.DNSSEC {
		c.pdnsutil = cfg.PDNSUtil
	}
	return c
}

// afterCommit runs, in order: pdnsutil rectify-zone (when dnssec is on: ordername and
// ENTs as PowerDNS's signer computes them); pdns_control rediscover (zone list changed:
// PowerDNS >= 4.5 refreshes its zone cache on rediscover, otherwise only every
// zone-cache-refresh-interval); pdns_control purge ZONE$ (drops every packet and query
// cache entry ending in the zone name, so the new data is served at once).
// zone is in row form (no trailing dot).
//
// Changes committed at about the same time share their pdns_control runs (coalescer):
// one rediscover reads the whole zone list, so one per create would cost O(zones) each,
// and a purge takes many names. It returns once the runs covering this commit are done,
// so pdns_server serves the change when the caller answers.
func (c control) afterCommit(ctx context.Context, zone string, rediscover bool) error {
	if c.pdnsutil != nil {
		if err := c.exec(ctx, c.pdnsutil, "rectify-zone", zone); err != nil {
			return err
		}
	}
	if c.pdnsControl == nil {
		return nil
	}
	// The rest is a wait for the shared batch: the transfer worker can go (backend.Committed).
	backend.Committed(ctx)
	return c.batches.join(ctx, zone, rediscover, c.flush)
}

// maxPurgeArgs bounds the names of one pdns_control purge (pdns_control sends its
// arguments as one line to the control socket).
const maxPurgeArgs = 200

// flush runs one batch's commands: one rediscover if any change asked for it, then the
// purges. Its own timeout: the batch outlives any one caller's context.
func (c control) flush(zones []string, rediscover bool) error {
	ctx := context.Background()
	if rediscover {
		if err := c.exec(ctx, c.pdnsControl, "rediscover"); err != nil {
			return err
		}
	}
	for len(zones) > 0 {
		n := min(len(zones), maxPurgeArgs)
		args := []string{"purge"}
		for _, z := range zones[:n] {
			args = append(args, z+"$")
		}
		if err := c.exec(ctx, c.pdnsControl, args...); err != nil {
			return err
		}
		zones = zones[n:]
	}
	return nil
}

// coalescer groups the changes committed while a batch of pdns_control runs is under way
// into the next batch: a lone change runs at once, and under a burst every batch covers
// what arrived during the previous one. Group commit, without a timer.
type coalescer struct {
	mu      sync.Mutex
	next    *batch // collecting; nil when none
	running bool
}

type batch struct {
	zones      []string
	rediscover bool
	done       chan struct{}
	err        error
}

func (c *coalescer) join(ctx context.Context, zone string, rediscover bool, flush func([]string, bool) error) error {
	c.mu.Lock()
	b := c.next
	if b == nil {
		b = &batch{done: make(chan struct{})}
		c.next = b
	}
	if !slices.Contains(b.zones, zone) {
		b.zones = append(b.zones, zone)
	}
	b.rediscover = b.rediscover || rediscover
	if !c.running {
		c.running = true
		go c.loop(flush)
	}
	c.mu.Unlock()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for pdns_control: %w", ctx.Err())
	}
}

func (c *coalescer) loop(flush func([]string, bool) error) {
	for {
		c.mu.Lock()
		b := c.next
		c.next = nil
		if b == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		b.err = flush(b.zones, b.rediscover)
		close(b.done)
	}
}

// ping checks that pdns_server answers on its control socket.
func (c control) ping(ctx context.Context) error {
	if c.pdnsControl == nil {
		return nil
	}
	return c.exec(ctx, c.pdnsControl, "rping")
}

func (c control) exec(ctx context.Context, base []string, args ...string) error {
	argv := append(append([]string(nil), base...), args...)
	if out, err := c.run(ctx, argv); err != nil {
		if out != "" {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}

// runCommand is the real runner.
func runCommand(ctx context.Context, argv []string) (string, error) {
	return run.Command(ctx, commandTimeout, argv)
}

package powerdns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
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
}

func newControl(cfg Config, run runner) control {
	c := control{run: run}
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
func (c control) afterCommit(ctx context.Context, zone string, rediscover bool) error {
	if c.pdnsutil != nil {
		if err := c.exec(ctx, c.pdnsutil, "rectify-zone", zone); err != nil {
			return err
		}
	}
	if c.pdnsControl == nil {
		return nil
	}
	if rediscover {
		if err := c.exec(ctx, c.pdnsControl, "rediscover"); err != nil {
			return err
		}
	}
	return c.exec(ctx, c.pdnsControl, "purge", zone+"$")
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
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if out, err := c.run(ctx, argv); err != nil {
		if out = boundedOutput(out); out != "" {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}

// runCommand is the real runner.
func runCommand(ctx context.Context, argv []string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A child that keeps the output pipe open must not hold us past the timeout.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", commandTimeout, err)
	}
	return out.String(), err
}

func boundedOutput(out string) string {
	out = strings.TrimSpace(out)
	if len(out) > 1024 {
		out = strings.ToValidUTF8(out[:1024], "") + " [...]"
	}
	return out
}

package powerdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// controlSocketName is the file pdns_server listens on in its socket-dir.
const controlSocketName = "pdns.controlsocket"

// maxControlAnswer bounds what the agent reads of one answer; rediscover, purge and rping
// answer a line.
const maxControlAnswer = 64 << 10

// controlSocket sends pdns_control's commands to pdns_server's control socket itself, as
// pdns_control does (its source, dynloader.cc: the arguments joined by spaces; it exits 1
// only on an answer starting "Unknown"): it writes the line and a newline, then reads the
// answer until pdns_server closes the connection, which 4.7.3 does (the PowerDNS tests
// that go over the socket, tests/powerdns_test.go). It is used
// when pdns_socket_dir is set and pdns_control left as it is, and saves starting a
// process per command: about 3 ms a command on an idle machine, most of it pdns_control
// starting, and CREATE bursts wait for batches of rediscover and purge (a batch's purge
// took 11 ms under a burst on 2 cores; issue 15: 10,000 creates 474 -> 542 zones/s). Any
// other command (pdnsutil) goes to next.
type controlSocket struct {
	path string
	next runner
}

// directControl reports whether cfg lets the agent talk to the control socket itself.
func directControl(cfg Config) bool {
	return cfg.PDNSControlEnabled && cfg.PDNSSocketDir != "" && slices.Equal(cfg.PDNSControl, []string{DefaultPDNSControl})
}

func (c controlSocket) run(ctx context.Context, argv []string) (string, error) {
	if len(argv) == 0 || argv[0] != DefaultPDNSControl {
		return c.next(ctx, argv)
	}
	var args []string
	for _, a := range argv[1:] {
		if !strings.HasPrefix(a, "--socket-dir=") { // newControl's; the path says it
			args = append(args, a)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	answer, err := sendControl(ctx, c.path, strings.Join(args, " "))
	if err != nil {
		return answer, fmt.Errorf("pdns_server's control socket %s: %w", c.path, err)
	}
	return answer, nil
}

// sendControl sends one command line and returns the answer.
func sendControl(ctx context.Context, path, command string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// The context's end (its timeout included) ends a read or write under way.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) }) //nolint:errcheck
	defer stop()
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxControlAnswer+1))
	answer := strings.TrimSpace(string(b))
	switch {
	case err != nil:
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer to %q: %w", command, ctx.Err())
		}
		return answer, err
	case len(b) > maxControlAnswer:
		return "", fmt.Errorf("answer to %q longer than %d bytes", command, maxControlAnswer)
	case strings.HasPrefix(answer, "Unknown"):
		return "", errors.New(answer)
	}
	return answer, nil
}

// controlSocketPath is pdns.controlsocket in dir.
func controlSocketPath(dir string) string { return filepath.Join(dir, controlSocketName) }

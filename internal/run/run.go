// Package run runs the external commands the backends drive (rndc, pdns_control,
// pdnsutil, a file backend's reload_command): directly, never through a shell, bounded in
// time, and with what they print kept short enough for one log field.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// MaxOutput bounds the output kept of a command, so a confused or chatty program cannot
// flood the log.
const MaxOutput = 2048

// ErrTimedOut is in the error of a command the timeout ended.
var ErrTimedOut = errors.New("timed out")

// waitDelay is how long Wait waits for the output pipes after the command exits or is
// killed: a child that inherited them and outlives the command must not hold us.
const waitDelay = time.Second

// Command runs argv with the timeout and returns its combined output, Clipped: the reason
// a tool gives when it fails is on stdout or stderr. An error says when the timeout ended
// the command (ErrTimedOut).
func Command(ctx context.Context, timeout time.Duration, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w after %s: %w", ErrTimedOut, timeout, err)
	}
	return Clip(out.String()), err
}

// Clip puts text on one line (tools explain themselves over several) and cuts it to
// MaxOutput bytes.
func Clip(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > MaxOutput {
		text = strings.ToValidUTF8(text[:MaxOutput], "") + " [...]"
	}
	return text
}

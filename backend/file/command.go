package file

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// maxOutput bounds the command output quoted in an error, so a chatty command cannot
// flood the log.
const maxOutput = 1024

// expandArgs replaces {zone} and {file} in each argument. It works on the argv the
// configuration produced, so a substituted value is always part of one argument and is
// never split or interpreted.
func expandArgs(argv []string, zone, path string) []string {
	r := strings.NewReplacer("{zone}", strings.TrimSuffix(zone, "."), "{file}", path)
	out := make([]string, len(argv))
	for i, arg := range argv {
		out[i] = r.Replace(arg)
	}
	return out
}

// runCommand runs argv directly (never through a shell) with a timeout. Its error carries
// the command's combined output, which is where tools like knotc and nsd-control say why.
func runCommand(ctx context.Context, timeout time.Duration, argv []string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// A child that inherits the output pipe and outlives the command must not hold us.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	if text := boundedOutput(out.Bytes()); text != "" {
		return fmt.Errorf("command %q: %w: %s", argv, err, text)
	}
	return fmt.Errorf("command %q: %w", argv, err)
}

func boundedOutput(out []byte) string {
	text := strings.TrimSpace(string(out))
	if len(text) > maxOutput {
		text = strings.ToValidUTF8(text[:maxOutput], "") + " [...]"
	}
	return text
}

package file

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/internal/run"
)

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

// runCommand runs argv (internal/run). Its error carries the command's output, which is
// where tools like knotc and nsd-control say why.
func runCommand(ctx context.Context, timeout time.Duration, argv []string) error {
	out, err := run.Command(ctx, timeout, argv)
	switch {
	case err == nil:
		return nil
	case out != "":
		return fmt.Errorf("command %q: %w: %s", argv, err, out)
	}
	return fmt.Errorf("command %q: %w", argv, err)
}

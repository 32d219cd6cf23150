package bind9_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/backend/bind9"
	"github.com/dnsagent/dnsagent/tests/harness"
)

// TestChannelAgainstNamed: the agent's own control channel client is understood by a
// real named: commands run (status, addzone, showzone, delzone), named's refusals come
// back as errors with named's text, and a wrong key is refused.
func TestChannelAgainstNamed(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	n := harness.StartBackendNamed(t, harness.BackendOptions{})
	key, err := bind9.ReadKeyFile(n.RNDCKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	c := &bind9.Channel{Addr: fmt.Sprintf("127.0.0.1:%d", n.ControlPort()), Key: key, Timeout: 5 * time.Second}
	ctx := context.Background()
	out, err := c.Run(ctx, "status")
	if err != nil || !strings.Contains(out, "server is up and running") {
		t.Fatalf("status = %q, %v", out, err)
	}
	if _, err := c.Run(ctx, "addzone", "chan.test", `{ type primary; file "/nonexistent/chan.test.zone"; };`); err == nil {
		t.Fatal("addzone of a zone without a file succeeded")
	} else if re := new(bind9.RNDCError); !errors.As(err, &re) || re.Output == "" {
		t.Fatalf("addzone failure = %v, want an RNDCError with named's text", err)
	} else {
		t.Logf("named refused: %v", err)
	}
	if out, err := c.Run(ctx, "showzone", "chan.test"); err == nil || !strings.Contains(out, "no matching zone") {
		t.Fatalf("showzone of a zone named lacks = %q, %v", out, err)
	}
	// The texts the backend acts on: "already exists" (create), the file in showzone.
	file := filepath.Join(n.ZoneDir(), "chan.test.zone")
	if err := os.WriteFile(file, []byte("@ 300 IN SOA ns hm 1 2 3 4 5\n@ 300 IN NS ns\nns 300 IN A 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{ type primary; file "%s"; };`, file)
	if out, err := c.Run(ctx, "addzone", "chan.test", conf); err != nil {
		t.Fatalf("addzone = %q, %v", out, err)
	}
	if out, err := c.Run(ctx, "addzone", "chan.test", conf); err == nil || !strings.Contains(out, "already exists") {
		t.Fatalf("addzone again = %q, %v, want named's \"already exists\"", out, err)
	}
	if out, err := c.Run(ctx, "showzone", "chan.test"); err != nil || !strings.Contains(out, file) {
		t.Fatalf("showzone = %q, %v, want the file", out, err)
	}
	if s, err := n.Serial("chan.test."); err != nil || s != 1 {
		t.Fatalf("named serves serial %d, %v", s, err)
	}
	if out, err := c.Run(ctx, "delzone", "-clean", "chan.test"); err != nil {
		t.Fatalf("delzone = %q, %v", out, err)
	}

	bad := &bind9.Channel{Addr: c.Addr, Key: key, Timeout: c.Timeout}
	bad.Key.Secret = append([]byte(nil), key.Secret...)
	bad.Key.Secret[0] ^= 1
	if out, err := bad.Run(ctx, "status"); err == nil || !strings.Contains(err.Error(), "wrong key") {
		t.Fatalf("with a wrong key: %q, %v, want an error suggesting the key", out, err)
	}
}

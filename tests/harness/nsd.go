package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// StartNSD starts a private nsd serving opts' zones, in the foreground, without a
// database file, its control socket a Unix socket in its directory (no certificates).
// NSD 4.6 keeps no IXFR history: it answers an IXFR request with the whole zone (RFC 1995
// §4 allows it), which the agent reports as "IXFR-full". SetZone reloads through
// `nsd-control reload`.
func StartNSD(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	nsd := mustLook(t, "nsd")
	nsdControl := mustLook(t, "nsd-control")
	s := newServer(t, "nsd", opts)
	conf := filepath.Join(s.dir, "nsd.conf")
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  ip-address: 127.0.0.1\n  port: %d\n  server-count: 1\n", s.port)
	fmt.Fprintf(&b, "  username: \"\"\n  chroot: \"\"\n  zonesdir: %q\n  database: \"\"\n", s.dir)
	for k, f := range map[string]string{"pidfile": "nsd.pid", "xfrdfile": "xfrd.state", "zonelistfile": "zone.list", "xfrdir": "."} {
		fmt.Fprintf(&b, "  %s: %q\n", k, filepath.Join(s.dir, f))
	}
	fmt.Fprintf(&b, "  verbosity: 2\n")
	fmt.Fprintf(&b, "remote-control:\n  control-enable: yes\n  control-interface: %q\n", filepath.Join(s.dir, "nsd.sock"))
	acl := "127.0.0.0/8 NOKEY"
	if k := opts.TSIG; k != nil {
		fmt.Fprintf(&b, "key:\n  name: %s\n  algorithm: %s\n  secret: %q\n", k.Name, k.Algorithm, k.Secret)
		acl = "127.0.0.0/8 " + k.Name
	}
	zones := make([]string, 0, len(s.files))
	for z := range s.files {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, z := range zones {
		fmt.Fprintf(&b, "zone:\n  name: %q\n  zonefile: %q\n  provide-xfr: %s\n", z, s.files[z], acl)
		for _, a := range opts.Notify {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatalf("StartNSD: notify target %q: %v", a, err)
			}
			fmt.Fprintf(&b, "  notify: %s@%s NOKEY\n", host, port)
		}
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reload = func(zone string) (string, error) {
		return control(nsdControl, "-c", conf, "reload", zone)
	}
	s.start(nsd, "-d", "-c", conf)
	return s
}

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

// StartKnot starts a private knotd serving opts' zones, both as a primary the agent
// transfers from and as a consumer loading the agent's files (ServerOptions.Files). It
// keeps a journal of the differences between zone file versions (zonefile-load:
// difference), so it answers IXFR incrementally, and never writes the zone files back.
// SetZone reloads through `knotc zone-reload`.
func StartKnot(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	knotd := mustLook(t, "knotd")
	knotc := mustLook(t, "knotc")
	s := newServer(t, "knotd", opts)
	conf := filepath.Join(s.dir, "knot.conf")
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  rundir: %q\n  listen: 127.0.0.1@%d\n", s.dir, s.port)
	fmt.Fprintf(&b, "  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n")
	fmt.Fprintf(&b, "control:\n  listen: %q\n", filepath.Join(s.dir, "knot.sock"))
	fmt.Fprintf(&b, "database:\n  storage: %q\n", s.dir)
	fmt.Fprintf(&b, "log:\n  - target: stderr\n    any: info\n")
	acl := "  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\n"
	if k := opts.TSIG; k != nil {
		fmt.Fprintf(&b, "key:\n  - id: %s\n    algorithm: %s\n    secret: %s\n", k.Name, k.Algorithm, k.Secret)
		acl += "    key: " + k.Name + "\n"
	}
	fmt.Fprintf(&b, "acl:\n%s", acl)
	var notify []string
	if len(opts.Notify) > 0 {
		fmt.Fprintf(&b, "remote:\n")
		for i, a := range opts.Notify {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatalf("StartKnot: notify target %q: %v", a, err)
			}
			notify = append(notify, fmt.Sprintf("notify%d", i))
			fmt.Fprintf(&b, "  - id: notify%d\n    address: %s@%s\n", i, host, port)
		}
	}
	// zonefile-sync -1: knotd never rewrites a zone file (the agent's files are the
	// agent's). difference: a reload stores the changes in the journal, which IXFR serves.
	fmt.Fprintf(&b, "template:\n  - id: default\n    storage: %q\n    zonefile-sync: -1\n", s.dir)
	fmt.Fprintf(&b, "    zonefile-load: difference\n    journal-content: changes\n    acl: xfr\n")
	if len(notify) > 0 {
		fmt.Fprintf(&b, "    notify: [%s]\n", strings.Join(notify, ", "))
	}
	fmt.Fprintf(&b, "zone:\n")
	zones := make([]string, 0, len(s.files))
	for z := range s.files {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, z := range zones {
		fmt.Fprintf(&b, "  - domain: %q\n    file: %q\n", z, s.files[z])
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reload = func(zone string) (string, error) {
		return control(knotc, "-c", conf, "-t", "10", "zone-reload", zone)
	}
	s.start(knotd, "-c", conf)
	return s
}

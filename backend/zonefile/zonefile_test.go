package zonefile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
)

const zone = "example.com."

func open(t *testing.T) (*Dir, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zones")
	d, err := Open(path, 0o640, "")
	if err != nil {
		t.Fatal(err)
	}
	return d, path
}

func write(t *testing.T, d *Dir, zone string, serial uint32) {
	t.Helper()
	src := backendtest.Stream(backendtest.Batches(backendtest.Zone(zone, serial, 10), 3)...)
	if err := d.Write(t.Context(), backend.StreamCheck{Zone: zone}, src); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, group, want string
	}{
		{"path is a file", file, "", "zone_file_path"},
		{"negative gid", t.TempDir(), "-1", "file_group"},
		{"unknown group", t.TempDir(), "no-such-group-dnsagent", "file_group"},
	}
	for _, tt := range tests {
		if _, err := Open(tt.path, 0o644, tt.group); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %s", tt.name, err, tt.want)
		}
	}
}

func TestWriteThenSerial(t *testing.T) {
	d, dir := open(t)
	write(t, d, zone, 42)
	if serial, err := d.Serial(zone); err != nil || serial != 42 {
		t.Fatalf("Serial: %d, %v", serial, err)
	}
	info, err := os.Stat(d.Path(zone))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o640 {
		t.Errorf("mode %o, want 640", info.Mode().Perm())
	}
	if got := backendtest.DirNames(t, dir); !slices.Equal(got, []string{"example.com.zone"}) {
		t.Errorf("directory holds %q", got)
	}
	if _, err := d.Serial("missing.example."); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Serial of a missing zone: %v", err)
	}
}

func TestFailedWriteKeepsTheFile(t *testing.T) {
	d, dir := open(t)
	write(t, d, zone, 1)
	before, _ := os.ReadFile(d.Path(zone))
	broken := errors.New("connection reset")
	src := backendtest.FailingStream(broken, backendtest.Zone(zone, 2, 5))
	if err := d.Write(t.Context(), backend.StreamCheck{Zone: zone}, src); !errors.Is(err, broken) {
		t.Fatalf("Write: %v", err)
	}
	if after, _ := os.ReadFile(d.Path(zone)); !bytes.Equal(before, after) {
		t.Error("the zone file changed")
	}
	if got := backendtest.DirNames(t, dir); !slices.Equal(got, []string{"example.com.zone"}) {
		t.Errorf("directory holds %q (temp file left behind?)", got)
	}
}

func TestSerialRefusesAnotherSOA(t *testing.T) {
	d, _ := open(t)
	if err := os.WriteFile(d.Path(zone), []byte("example.org. 300 IN SOA ns. host. 1 2 3 4 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Serial(zone); err == nil || !strings.Contains(err.Error(), "does not start with the zone's SOA") {
		t.Fatalf("Serial: %v", err)
	}
}

// Zones lists what the agent wrote, and nothing else the directory holds.
func TestZones(t *testing.T) {
	d, dir := open(t)
	write(t, d, zone, 1)
	write(t, d, "a.test.", 1)
	for _, name := range []string{"Upper.test.zone", "notes.txt", "bad..zone", ".example.com.zone~123"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.test.zone"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := d.Zones()
	if err != nil || !slices.Equal(got, []string{"a.test.", zone}) {
		t.Fatalf("Zones: %q, %v", got, err)
	}
}

func TestContains(t *testing.T) {
	d, dir := open(t)
	tests := map[string]bool{
		dir + "/example.com.zone":       true,
		dir + "/sub/x.zone":             true,
		dir + "/../elsewhere/x.zone":    false,
		dir + "-other/example.com.zone": false,
		dir:                             false,
		"example.com.zone":              false,
		"":                              false,
	}
	for file, want := range tests {
		if got := d.Contains(file); got != want {
			t.Errorf("Contains(%q) = %v, want %v", file, got, want)
		}
	}
}

func TestLineEscapesDirectives(t *testing.T) {
	for _, owner := range []string{`\$INCLUDE.example.com.`, `\$ORIGIN.example.com.`, `\$TTL.example.com.`} {
		rr, err := dns.NewRR(owner + " 300 IN A 192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		line := Line(rr)
		zp := dns.NewZoneParser(strings.NewReader(line+"\n"), "example.com.", "")
		got, ok := zp.Next()
		if !ok || got.Header().Name != rr.Header().Name {
			t.Errorf("line %q reads back as %v (%v), want owner %s", line, got, zp.Err(), rr.Header().Name)
		}
	}
}

func TestSweepTempsRemovesOnlyTempFiles(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, 0o644, "")
	if err != nil {
		t.Fatal(err)
	}
	keep := []string{"example.com.zone", "notes.txt"}
	for _, name := range append(keep, ".example.com.zone~123", ".other.org.zone~9") {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SweepTemps(); err != nil {
		t.Fatal(err)
	}
	if got := backendtest.DirNames(t, dir); !slices.Equal(got, keep) {
		t.Errorf("after the sweep the directory holds %v, want %v", got, keep)
	}
}

// LineKey must name a record exactly as backend.Key does, for every shape of record the
// file backend writes, or the fast patch path would keep or drop the wrong records.
func TestLineKeyMatchesKey(t *testing.T) {
	var rrs []dns.RR
	for _, text := range []string{
		`Www.Example.com. 300 IN A 192.0.2.1`,
		`example.com. 3600 IN NS ns1.example.com.`,
		`example.com. 300 IN MX 10 Mail.example.com.`,
		`t.example.com. 300 IN TXT "a b" "c\"d" "e;f"`,
		`v6.example.com. 300 IN AAAA 2001:db8::1`,
		`_sip._tcp.example.com. 300 IN SRV 0 5 5060 sip.example.com.`,
		`c.example.com. 300 IN CAA 0 issue "ca.example"`,
		`x.example.com. 300 IN TYPE65534 \# 4 0a000001`,
		`e.example.com. 300 IN TXT ""`,
		`a\ b.example.com. 300 IN A 192.0.2.3`,
		`\(x.example.com. 300 IN A 192.0.2.4`,
	} {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		rrs = append(rrs, rr)
	}
	// From the wire, an owner may start with '$' (nothing escapes it there).
	rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: "$INCLUDE.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A: []byte{192, 0, 2, 9}})
	for _, rr := range rrs {
		got, ok := LineKey(Line(rr))
		if want := backend.Key(rr); !ok || got != want {
			t.Errorf("LineKey(%q) = %q, %v; want %q", Line(rr), got, ok, want)
		}
	}
	for _, line := range []string{"", "; comment", "example.com. IN A 192.0.2.1", "$ORIGIN example.com."} {
		if key, ok := LineKey(line); ok {
			t.Errorf("LineKey(%q) = %q: a line of another shape must not be taken", line, key)
		}
	}
}

// The lines Knot DNS 3.2 refused (issue 12, item 7): each must come out in a form BIND,
// Knot and NSD all read, and read back as the same record. tests/knot_test.go runs the real
// checkers (named-checkzone, nsd-checkzone, kzonecheck) on a zone of every type.
func TestLineKnotAccepts(t *testing.T) {
	wire := func(name string) dns.RR { // from the wire nothing escapes a '$'
		return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: "t$x.example.com."}
	}
	for _, c := range []struct {
		rr   dns.RR
		want string
	}{
		{mustRR(t, `u.example.com. 300 IN TYPE65000 \# 4 0a000001`), "u.example.com.\t300\tIN\tTYPE65000\t\\# 4 0a000001"},
		{mustRR(t, `u.example.com. 300 IN TYPE65001 \# 0`), "u.example.com.\t300\tIN\tTYPE65001\t\\# 0"},
		// a type Knot or NSD does not know by name: generic form too (RFC 3597 §5)
		{mustRR(t, `h.example.com. 300 IN AMTRELAY 10 0 1 203.0.113.15`), "h.example.com.\t300\tIN\tTYPE260\t\\# 6 0a01cb00710f"},
		{mustRR(t, `n.example.com. 300 IN NSEC z.example.com. A AMTRELAY TYPE65000`), "n.example.com.\t300\tIN\tNSEC\tz.example.com. A TYPE260 TYPE65000"},
		{mustRR(t, `s.example.com. 300 IN SVCB 1 . alpn=h2 no-default-alpn key65000 port=8443`), "s.example.com.\t300\tIN\tSVCB\t1 . alpn=\"h2\" no-default-alpn key65000 port=\"8443\""},
		{mustRR(t, `s.example.com. 300 IN HTTPS 1 . no-default-alpn alpn=h3`), "s.example.com.\t300\tIN\tHTTPS\t1 . no-default-alpn alpn=\"h3\""},
		{wire("a$b.example.com."), "a\\$b.example.com.\t300\tIN\tCNAME\tt\\$x.example.com."},
		{mustRR(t, `a\$b.example.com. 300 IN TXT "$5 \$6"`), "a\\$b.example.com.\t300\tIN\tTXT\t\"$5 $6\""},
	} {
		line := Line(c.rr)
		if line != c.want {
			t.Errorf("Line(%s)\n = %q\nwant %q", c.rr, line, c.want)
		}
		back, err := dns.NewRR(line)
		if err != nil || !sameWire(t, back, c.rr) {
			t.Errorf("line %q reads back as %v (%v), want %s", line, back, err, c.rr)
		}
		if key, ok := LineKey(line); !ok || key != backend.Key(c.rr) {
			t.Errorf("LineKey(%q) = %q, want backend.Key %q", line, key, backend.Key(c.rr))
		}
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return rr
}

// sameWire compares records in wire format (miekg keeps a name's escapes in its string).
func sameWire(t *testing.T, a, b dns.RR) bool {
	t.Helper()
	pack := func(rr dns.RR) []byte {
		buf := make([]byte, 4096)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("pack %s: %v", rr, err)
		}
		return buf[:n]
	}
	return bytes.Equal(pack(a), pack(b))
}

// longName builds a valid zone name of n characters (final dot left out) ending in suffix.
func longName(n int, suffix string) string {
	var b strings.Builder
	for b.Len()+len(suffix) < n {
		label := strings.Repeat("a", min(63, n-len(suffix)-b.Len()-1))
		b.WriteString(label + ".")
	}
	name := b.String() + suffix
	return strings.TrimPrefix(name[len(name)-n:], ".") + "."
}

// Every valid zone name gets files within the 255-byte name limit: names of up to 238
// characters keep <zone>.zone, longer ones a shortened name that Zones maps back.
func TestLongZoneNamesFit(t *testing.T) {
	d, dir := open(t)
	var want []string
	for _, n := range []int{238, 239, 240, 250, 251, 253} {
		z := longName(n, "example.com")
		if len(z) != n+1 || backend.ValidateZoneName(z) != nil {
			t.Fatalf("test name %q: %d characters, %v", z, len(z)-1, backend.ValidateZoneName(z))
		}
		writeLong(t, d, z, 7)
		if serial, err := d.Serial(z); err != nil || serial != 7 {
			t.Errorf("%d characters: Serial %d, %v", n, serial, err)
		}
		base := filepath.Base(d.Path(z))
		if n <= 238 && base != strings.TrimSuffix(z, ".")+".zone" {
			t.Errorf("%d characters: file %s, want the plain name", n, base)
		}
		if len(base)+len(".jnl") > 255 || len(tempPrefix(z))+10 > 255 {
			t.Errorf("%d characters: file %s (%d bytes), temp prefix %d bytes", n, base, len(base), len(tempPrefix(z)))
		}
		want = append(want, z)
	}
	// Two long names alike in their first 200 characters get different files.
	twin := longName(253, "example.net")
	writeLong(t, d, twin, 1)
	want = append(want, twin)
	slices.Sort(want)
	if got, err := d.Zones(); err != nil || !slices.Equal(got, want) {
		t.Errorf("Zones: %v %q\nwant %q", err, got, want)
	}
	if got := backendtest.DirNames(t, dir); len(got) != len(want) {
		t.Errorf("directory holds %q", got)
	}
	for _, z := range want {
		if err := d.Remove(z); err != nil {
			t.Errorf("Remove %s: %v", z, err)
		}
	}
}

// writeLong writes a zone of apex records only: names below a long zone would be too long.
func writeLong(t *testing.T, d *Dir, zone string, serial uint32) {
	t.Helper()
	var rrs []dns.RR
	for _, s := range []string{fmt.Sprintf("SOA ns.example. h.example. %d 1 1 1 1", serial), "NS ns.example.", `TXT "x"`} {
		rr, err := dns.NewRR(zone + " 300 IN " + s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	src := backendtest.Stream(backendtest.Batches(rrs, 3)...)
	if err := d.Write(t.Context(), backend.StreamCheck{Zone: zone}, src); err != nil {
		t.Fatal(err)
	}
}

// Concurrent Syncs share runs, and each caller returns only after a run that started
// after it called: a change made before Sync is never covered by a run already under way.
func TestGroupSyncCoversEveryCaller(t *testing.T) {
	var (
		g       groupSync
		mu      sync.Mutex
		changes int // changes made (a counter standing for renames)
		covered int // changes made before the last run started
		runs    int
	)
	g.cond.L = &g.mu
	const callers = 64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			mu.Lock()
			changes++
			mine := changes
			mu.Unlock()
			err := g.do(func() error {
				mu.Lock()
				covered = changes
				runs++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // an fsync
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil || covered < mine {
				t.Errorf("change %d: Sync returned %v after a run covering changes up to %d", mine, err, covered)
			}
		})
	}
	wg.Wait()
	if runs >= callers {
		t.Errorf("%d runs for %d concurrent callers: no run was shared", runs, callers)
	}
	t.Logf("%d callers, %d runs", callers, runs)
}

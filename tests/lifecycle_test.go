package tests

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// Acceptance test 2: CREATE pulls a 1,000+ record zone into exactly the primary's
// records; a NOTIFY after a change brings the new version within 2 s; DELETE removes the
// file; CREATE and DELETE are idempotent.
func TestAT02CreateNotifyDelete(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 1200, ixfr: true, allowLocal: true})
	a, p := e.a, e.p
	path := a.ZoneFile(zone)

	start := time.Now()
	create(t, a, 0x0201)
	t.Logf("CREATE of %d records answered in %v", e.z.Count, time.Since(start))
	if t.Failed() {
		t.FailNow()
	}
	want := primarySet(t, p)
	if d := diffFile(a, want); d != "" {
		t.Fatalf("after CREATE the zone file is not the primary's zone: %s", d)
	}
	fileMode(t, path)

	// Designate's worker follows every CREATE with a NOTIFY (0x2100): accepted, a500.
	req := harness.NotifyMsg(0x0202, zone, true)
	expectBytes(t, "NOTIFY after CREATE", udp(t, a.Addr(), req, 3*time.Second), harness.Reply(req, 0xa500))

	// A new version: serial bumped, 150 records removed, 200 added.
	z2 := e.z.Next(150, 200)
	p.SetZone(t, zone, z2.Text())
	want2 := primarySet(t, p)
	if harness.DiffSets(want, want2, 1) == "" {
		t.Fatal("test bug: the new version equals the old one")
	}
	sent := time.Now()
	notify(t, a, 0x0203)
	took, d := waitFile(a, want2, 2*time.Second)
	if d != "" {
		// Not within 2 s: find out whether it is slow or wrong, for the report.
		more, d2 := waitFile(a, want2, 10*time.Second)
		if d2 == "" {
			t.Errorf("the zone file matched the new version only %v after the NOTIFY (want <= 2 s)", time.Since(sent))
		} else {
			t.Errorf("the zone file does not match the new version %v after the NOTIFY: %s", took+more, d2)
		}
	} else {
		t.Logf("new version in the file %v after the NOTIFY", took)
	}
	if s, err := harness.ZoneFileSerial(path, zone); err != nil || s != z2.Serial {
		t.Errorf("zone file serial %d (%v), want %d", s, err, z2.Serial)
	}
	fileMode(t, path)

	// DELETE: NOERROR+AA, and the file is gone when the reply comes.
	del := harness.DeleteMsg(0x0204, zone)
	expectBytes(t, "DELETE", udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf400))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		gone := harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
			_, err := os.Stat(path)
			return os.IsNotExist(err)
		})
		t.Errorf("zone file still present when DELETE was answered (gone within 2 s after: %v)", gone)
	}
	for _, n := range dirEntries(t, a.Dir()) {
		if strings.Contains(strings.ToLower(n), "example.com") {
			t.Errorf("after DELETE %q is left in zone_file_path", n)
		}
	}

	// DELETE of a zone that is not there (the same one again, and another): NOERROR+AA.
	for i, z := range []string{zone, "missing.example.org."} {
		del := harness.DeleteMsg(0x0210+uint16(i), z)
		expectBytes(t, "DELETE of a missing zone "+z, udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf400))
	}

	// A second CREATE brings the zone back, identical to the primary's current version.
	create(t, a, 0x0220)
	if d := diffFile(a, want2); d != "" {
		t.Errorf("after the second CREATE: %s", d)
	}
	// CREATE of a zone that exists: NOERROR+AA, file untouched.
	before, _ := os.ReadFile(path)
	create(t, a, 0x0221)
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Errorf("CREATE of an existing zone rewrote its file")
	}
	a.CheckAlive(t)
}

package tests

// Issue 14 acceptance 4: zone names of 240, 250 and 253 characters (the longest valid
// ones) work end to end on the file and bind9 backends: their files must fit the 255-byte
// file-name limit with the temp and journal suffixes.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// longZone is a valid zone name of n characters, final dot left out.
func longZone(n int, tag string) string {
	name := tag + ".example.com"
	for len(name) < n {
		name = strings.Repeat("x", min(63, n-len(name)-1)) + "." + name
	}
	return name + "."
}

// longZoneText is a version of a zone with apex records only: below a 253-character
// name there is no room for another label.
// Twenty records stay the same.
func longZoneText(z string, serial uint32) string {
	var static strings.Builder
	for i := range 20 {
		fmt.Fprintf(&static, "%s 300 IN TXT \"static %d\"\n", z, i)
	}
	return static.String() + fmt.Sprintf("$TTL 300\n%s 3600 IN SOA ns1.example.net. hostmaster.example.net. %d 3600 600 86400 300\n"+
		"%s 3600 IN NS ns1.example.net.\n%s 300 IN TXT \"version %d\"\n%s 300 IN A 192.0.2.%d\n", z, serial, z, z, serial, z, serial%250)
}

func TestLongZoneNames(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	for _, be := range []string{"file", "bind9-reload", "bind9-update"} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			var zones []string
			texts := map[string]string{}
			for _, n := range []int{240, 250, 253} {
				z := longZone(n, strings.TrimPrefix(be, "bind9-"))
				zones = append(zones, z)
				texts[z] = longZoneText(z, 1)
			}
			p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: texts, IXFRFromDifferences: true, ExtraOptions: "max-ixfr-ratio unlimited;"})
			var a *harness.Agent
			var served func(z string) (uint32, error)
			if be == "file" {
				a = harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"})
				served = func(z string) (uint32, error) {
					rrs, err := harness.ParseZoneFile(a.ZoneFile(z), bogusOrigin)
					if err != nil {
						return 0, err
					}
					return rrs[0].(*dns.SOA).Serial, nil
				}
			} else {
				n := harness.StartBackendNamed(t, harness.BackendOptions{})
				a = harness.StartAgent(t, bind9AgentConfig(p, n, strings.TrimPrefix(be, "bind9-")))
				served = n.Serial
			}
			waitSerial := func(z string, want uint32) {
				t.Helper()
				var got uint32
				var err error
				if !harness.Eventually(10*time.Second, 20*time.Millisecond, func() bool {
					got, err = served(z)
					return err == nil && got == want
				}) {
					t.Fatalf("%d-character zone: serial %d (%v), want %d\nagent:\n%s", len(z)-1, got, err, want, a.Output())
				}
			}
			for i, z := range zones {
				id := uint16(0x1400 + 16*i)
				req := harness.CreateMsg(id, z)
				if !expectBytes(t, fmt.Sprintf("CREATE of a %d-character zone", len(z)-1), udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400)) {
					t.Fatalf("agent:\n%s", a.Output())
				}
				waitSerial(z, 1)

				p.SetZone(t, z, longZoneText(z, 2))
				mark := len(a.Output())
				req = harness.NotifyMsg(id+1, z, false)
				expectBytes(t, "NOTIFY", udp(t, a.Addr(), req, 3*time.Second), harness.Reply(req, 0xa400))
				waitSerial(z, 2)
				if !agentLogged(a, mark, `"type": "IXFR",`) {
					t.Errorf("%d-character zone: the change did not come by IXFR:\n%s\nprimary:\n%s", len(z)-1, a.Output()[mark:], p.Output())
				}

				// A NOTIFY for a long zone the agent does not hold is refused, not a SERVFAIL.
				other := longZone(len(z)-1, "other")
				req = harness.NotifyMsg(id+2, other, false)
				if r := udp(t, a.Addr(), req, 3*time.Second); len(r) < 4 || r[3]&0xf != dns.RcodeRefused {
					t.Errorf("NOTIFY for an unknown %d-character zone: %s, want REFUSED", len(other)-1, harness.DescribeReply(r))
				}
			}
			if be == "file" {
				names := dirEntries(t, a.Dir())
				for _, name := range names {
					if len(name) > 255 {
						t.Errorf("file name of %d bytes: %s", len(name), name)
					}
				}
				if len(names) != len(zones) {
					t.Errorf("zone_file_path holds %d files, want %d: %v", len(names), len(zones), names)
				}
			}
			for i, z := range zones {
				req := harness.DeleteMsg(uint16(0x1480+i), z)
				expectBytes(t, fmt.Sprintf("DELETE of a %d-character zone", len(z)-1), udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
				if _, err := os.Stat(filepath.Join(a.Dir(), harness.ZoneFileName(z))); !os.IsNotExist(err) {
					t.Errorf("%d-character zone: its file is still there after DELETE (%v)", len(z)-1, err)
				}
				if s, err := served(z); err == nil {
					t.Errorf("%d-character zone: still served at serial %d after DELETE", len(z)-1, s)
				}
			}
			if left := dirEntries(t, a.Dir()); len(left) != 0 && be == "file" {
				t.Errorf("after DELETE zone_file_path holds %v", left)
			}
			a.CheckAlive(t)
		})
	}
}

package tests

// End-to-end tests of catalog zones (tracker issue 9, RFC 9432): a private BIND primary
// serves a catalog zone and its member zones; the agent consumes the catalog and
// provisions the members into each backend (file, bind9, powerdns). Tests are named after
// the acceptance points (TestCatalogAT1...).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/catalog"
	"github.com/dnsagent/dnsagent/tests/harness"
)

const (
	catalogName = "catalog.test."
	opcode14    = "designate.test." // created by opcode 14, listed by the catalog for a while
	spareMember = 50                // served by the primary, added to the catalog later
)

func memberZone(i int) string { return fmt.Sprintf("m%02d.members.test.", i) }

// catalogVersion is one version of the catalog zone: unique label -> member zone.
type catalogVersion struct {
	serial  uint32
	version string // the version TXT ("" leaves it out)
	members map[string]string
	extra   []string // further lines, absolute names
}

func (v catalogVersion) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s 0 IN SOA invalid. invalid. %d 3600 600 86400 0\n%s 0 IN NS invalid.\n", catalogName, v.serial, catalogName)
	if v.version != "" {
		fmt.Fprintf(&b, "version.%s 0 IN TXT %q\n", catalogName, v.version)
	}
	labels := make([]string, 0, len(v.members))
	for l := range v.members {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		fmt.Fprintf(&b, "%s.zones.%s 0 IN PTR %s\n", l, catalogName, v.members[l])
	}
	for _, line := range v.extra {
		b.WriteString(line + "\n")
	}
	return b.String()
}

// with returns a copy of v with the next serial, labels removed and members added.
func (v catalogVersion) with(remove []string, add map[string]string) catalogVersion {
	n := catalogVersion{serial: v.serial + 1, version: v.version, members: map[string]string{}, extra: v.extra}
	for l, z := range v.members {
		n.members[l] = z
	}
	for _, l := range remove {
		delete(n.members, l)
	}
	for l, z := range add {
		n.members[l] = z
	}
	return n
}

// firstCatalog lists members 0..49; the first ten are in group "blue".
func firstCatalog() catalogVersion {
	v := catalogVersion{serial: 1, version: "2", members: map[string]string{}}
	for i := range 50 {
		label := fmt.Sprintf("m%02d", i)
		v.members[label] = memberZone(i)
		if i < 10 {
			v.extra = append(v.extra, fmt.Sprintf(`group.%s.zones.%s 0 IN TXT "blue"`, label, catalogName))
		}
	}
	return v
}

// catalogEnv is a primary serving the catalog and its members, a backend, and an agent
// consuming the catalog into it.
type catalogEnv struct {
	t      *testing.T
	p      *harness.Primary
	a      *harness.Agent
	served func(zone string) ([]string, error) // what the backend serves for zone; an error if nothing
	v      catalogVersion
	id     uint16
}

func startCatalogPrimary(t *testing.T, v catalogVersion) *harness.Primary {
	zones := map[string]string{catalogName: v.text(), opcode14: harness.GenerateZone(opcode14, 1, 8)}
	for i := 0; i <= spareMember; i++ {
		zones[memberZone(i)] = harness.GenerateZone(memberZone(i), 1, 8)
	}
	return harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: zones, IXFRFromDifferences: true})
}

// catalogOptions adds the catalog options to an agent's configuration.
func catalogOptions(t *testing.T, cfg harness.AgentConfig, extra map[string]string) harness.AgentConfig {
	if cfg.Service == nil {
		cfg.Service = map[string]string{}
	}
	cfg.Service["catalog_zones"] = catalogName
	cfg.Service["catalog_state_file"] = filepath.Join(t.TempDir(), "catalogs.json")
	cfg.Service["retry_min"] = "1"
	for k, v := range extra {
		cfg.Service[k] = v
	}
	return cfg
}

// startCatalogEnv starts the primary, the backend named by driver and the agent.
func startCatalogEnv(t *testing.T, driver string, extra map[string]string) *catalogEnv {
	t.Helper()
	harness.Require(t, "named", "rndc")
	e := &catalogEnv{t: t, v: firstCatalog(), id: 0x9000}
	e.p = startCatalogPrimary(t, e.v)
	switch driver {
	case "file":
		e.a = harness.StartAgent(t, catalogOptions(t, harness.AgentConfig{Masters: e.p.Addr(), AllowNotify: "127.0.0.1"}, extra))
		e.served = func(zone string) ([]string, error) {
			return harness.ZoneFileSet(e.a.ZoneFile(zone), bogusOrigin)
		}
	case "bind9":
		n := harness.StartBackendNamed(t, harness.BackendOptions{})
		e.a = harness.StartAgent(t, catalogOptions(t, bind9AgentConfig(e.p, n, "reload"), extra))
		e.served = n.AXFRSet
	case "powerdns":
		pe := startPDNSEnv(t, harness.PDNSOptions{})
		e.a = harness.StartAgent(t, catalogOptions(t, harness.AgentConfig{
			BackendDriver: "powerdns", Masters: e.p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: pe.p.Addr(),
			Backend: map[string]string{"zone_file_path": "-", "dsn": pe.m.DSN(pe.dbname),
				"pdns_control": harness.LookPath("pdns_control"), "pdns_socket_dir": pe.p.SocketDir()},
		}, extra))
		e.served = func(zone string) ([]string, error) {
			rrs, err := harness.AXFR(pe.p.Addr(), zone)
			if err != nil {
				return nil, err
			}
			return harness.AXFRSet(rrs), nil
		}
	}
	return e
}

// publish makes the primary serve v and NOTIFYs the agent of the catalog's change.
func (e *catalogEnv) publish(v catalogVersion) {
	e.t.Helper()
	e.v = v
	e.p.SetZone(e.t, catalogName, v.text())
	e.notify(catalogName)
}

func (e *catalogEnv) notify(zone string) {
	e.t.Helper()
	e.id++
	req := harness.NotifyMsg(e.id, zone, false)
	expectBytes(e.t, "NOTIFY "+zone, udp(e.t, e.a.Addr(), req, 3*time.Second), harness.Reply(req, 0xa400))
}

// waitServed waits until the backend serves each zone exactly as the primary does.
func (e *catalogEnv) waitServed(timeout time.Duration, zones ...string) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, zone := range zones {
		want := harness.AXFRSet(e.p.AXFR(e.t, zone))
		var last string
		ok := harness.Eventually(time.Until(deadline), 20*time.Millisecond, func() bool {
			got, err := e.served(zone)
			if err != nil {
				last = err.Error()
				return false
			}
			last = harness.DiffSets(want, got, 5)
			return last == ""
		})
		if !ok {
			e.t.Fatalf("%s is not served as the primary serves it: %s\ncatalog status: %+v", zone, last, e.status().Status)
		}
	}
}

// waitGone waits until the backend no longer serves zone.
func (e *catalogEnv) waitGone(zone string) {
	e.t.Helper()
	if !harness.Eventually(15*time.Second, 20*time.Millisecond, func() bool {
		_, err := e.served(zone)
		return err != nil
	}) {
		e.t.Fatalf("%s is still served", zone)
	}
}

// stillServed checks that zone is served now (after a change that must not touch it).
func (e *catalogEnv) stillServed(zone string) {
	e.t.Helper()
	if _, err := e.served(zone); err != nil {
		e.t.Errorf("%s is no longer served: %v", zone, err)
	}
}

// status reads /catalogs/NAME from the agent's HTTP endpoint.
func (e *catalogEnv) status() catalog.Detail {
	e.t.Helper()
	resp, err := catalogHTTP.Get("http://" + e.a.Config.MetricsListen + "/catalogs/" + catalogName)
	if err != nil {
		e.t.Fatalf("GET /catalogs: %v", err)
	}
	defer resp.Body.Close()
	var d catalog.Detail
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		e.t.Fatalf("GET /catalogs: %v", err)
	}
	return d
}

// waitStatus polls /catalogs/NAME until cond holds.
func (e *catalogEnv) waitStatus(what string, cond func(d catalog.Detail) bool) catalog.Detail {
	e.t.Helper()
	var d catalog.Detail
	if !harness.Eventually(15*time.Second, 20*time.Millisecond, func() bool {
		d = e.status()
		return cond(d)
	}) {
		e.t.Fatalf("catalog status never showed %s; last: %+v", what, d.Status)
	}
	return d
}

func (e *catalogEnv) waitApplied(serial uint32) catalog.Detail {
	e.t.Helper()
	return e.waitStatus(fmt.Sprintf("serial %d applied", serial), func(d catalog.Detail) bool {
		return d.Serial != nil && *d.Serial == serial && len(d.Failed) == 0
	})
}

// logged reports whether the agent logged a line holding every one of parts.
func (e *catalogEnv) logged(parts ...string) bool {
	for _, line := range strings.Split(e.a.Output(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func allMembers() []string {
	var zones []string
	for i := range 50 {
		zones = append(zones, memberZone(i))
	}
	return zones
}

// TestCatalogAT1AT2AT3 runs acceptance points 1 to 3 against each backend:
//  1. the catalog's 50 members appear in the backend and match the primary; a member
//     added to the catalog is created, a removed one deleted, one whose unique label
//     changed is deleted and created again;
//  2. a broken version (a zone under two labels; version "1" only) changes nothing and is
//     reported in /catalogs and the log;
//  3. a zone created by opcode 14 is never deleted by a catalog change.
func TestCatalogAT1AT2AT3(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"file", "bind9", "powerdns"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			e := startCatalogEnv(t, driver, nil)
			e.waitServed(40*time.Second, allMembers()...)
			t.Logf("%s: 50 members served %v after the agent started", driver, time.Since(start).Round(time.Millisecond))
			d := e.waitApplied(1)
			if d.Members != 50 || d.Owned != 50 || d.Groups["blue"] != 10 || d.Broken {
				t.Errorf("status after the first version: %+v; want 50 members owned, 10 in group blue", d.Status)
			}

			// Acceptance 3, part one: a zone created by opcode 14 ...
			req := harness.CreateMsg(0x9001, opcode14)
			expectBytes(t, "CREATE", udp(t, e.a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))

			// Acceptance 1: add the spare member, remove m49, give m48 a new unique label;
			// the catalog also lists the opcode-14 zone now.
			e.publish(e.v.with([]string{"m49", "m48"}, map[string]string{
				"m50": memberZone(spareMember), "m48-relabelled": memberZone(48), "dz": opcode14}))
			d = e.waitApplied(2)
			e.waitServed(15*time.Second, memberZone(spareMember), memberZone(48))
			e.waitGone(memberZone(49))
			if !harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
				return e.logged("member zone re-created", memberZone(48))
			}) {
				t.Errorf("the agent did not log that %s was re-created after its label changed", memberZone(48))
			}
			if d.Ignored[opcode14] == "" || d.Owned != 50 || d.Members != 51 {
				t.Errorf("status after adding the opcode-14 zone: %+v; want it ignored, 50 owned of 51 members", d.Status)
			}

			// Acceptance 3, part two: the catalog drops the opcode-14 zone: it stays.
			e.publish(e.v.with([]string{"dz"}, nil))
			e.waitApplied(3)
			e.stillServed(opcode14)

			// Acceptance 2: broken versions change nothing and are reported.
			applied := e.v
			broken := []struct {
				v      catalogVersion
				spared string // a member the broken version leaves out: it must stay
				reason string
			}{
				{applied.with([]string{"m01"}, map[string]string{"dup": memberZone(0)}), memberZone(1), "listed under two unique labels"},
				{catalogVersion{serial: applied.serial + 2, version: "1", members: map[string]string{"m00": memberZone(0)}}, memberZone(2), `schema version "1" is not supported`},
			}
			for _, b := range broken {
				e.publish(b.v)
				d := e.waitStatus(fmt.Sprintf("serial %d broken", b.v.serial), func(d catalog.Detail) bool {
					return d.Broken && d.BrokenSerial != nil && *d.BrokenSerial == b.v.serial
				})
				if !strings.Contains(d.BrokenReason, b.reason) || *d.Serial != applied.serial || d.Members != 50 {
					t.Errorf("broken serial %d: reason %q, applied serial %d, %d members; want %q, serial %d kept with 50 members",
						b.v.serial, d.BrokenReason, *d.Serial, d.Members, b.reason, applied.serial)
				}
				if !harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
					return e.logged("catalog is broken", strings.ReplaceAll(b.reason, `"`, `\"`)) // quoted in the log
				}) {
					t.Errorf("the log does not report serial %d as broken (%s)", b.v.serial, b.reason)
				}
				e.stillServed(b.spared)
			}
			e.waitServed(5*time.Second, memberZone(0), memberZone(1), memberZone(2), opcode14)

			// A valid version again: no longer broken.
			fixed := applied
			fixed.serial = applied.serial + 3
			e.publish(fixed)
			if d := e.waitApplied(fixed.serial); d.Broken {
				t.Errorf("still broken after a valid version: %+v", d.Status)
			}
			e.a.CheckAlive(t)
		})
	}
}

// TestCatalogAT4MassRemovalGuard is acceptance point 4: a version removing 90 % of the
// members is held back and reported; the next check finding the same serial applies it.
func TestCatalogAT4MassRemovalGuard(t *testing.T) {
	t.Parallel()
	e := startCatalogEnv(t, "file", nil)
	e.waitServed(40*time.Second, allMembers()...)
	e.waitApplied(1)

	var remove []string
	for i := 5; i < 50; i++ {
		remove = append(remove, fmt.Sprintf("m%02d", i))
	}
	e.publish(e.v.with(remove, nil))
	d := e.waitStatus("a pending removal", func(d catalog.Detail) bool { return d.PendingRemoval != nil })
	if pr := d.PendingRemoval; pr.Serial != 2 || pr.Removes != 45 || pr.Of != 50 || *d.Serial != 1 {
		t.Errorf("pending removal %+v with serial %d applied; want serial 2 removing 45 of 50, serial 1 kept", pr, *d.Serial)
	}
	if !e.logged("catalog version held back") {
		t.Error("the held removal is not in the log")
	}
	for i := 5; i < 50; i += 11 {
		e.stillServed(memberZone(i))
	}
	metrics := catalogHTTPGet(t, "http://"+e.a.Config.MetricsListen+"/metrics")
	if !strings.Contains(metrics, `dnsagent_catalog_pending_removal{catalog="catalog.test."} 45`) {
		t.Error("/metrics does not report the pending removal")
	}

	// A NOTIFY without a serial makes the agent check again: same serial, confirmed.
	e.notify(catalogName)
	d = e.waitApplied(2)
	for i := 5; i < 50; i++ {
		e.waitGone(memberZone(i))
	}
	e.waitServed(5*time.Second, memberZone(0), memberZone(4))
	if d.PendingRemoval != nil || d.Members != 5 {
		t.Errorf("after the confirmation: %+v", d.Status)
	}
	if entries, err := os.ReadDir(e.a.Dir()); err != nil || len(entries) != 5 {
		t.Errorf("zone directory holds %d entries (%v), want the 5 members left", len(entries), err)
	}
}

// catalogHTTP reads the agent's HTTP endpoint; an agent that stops answering fails the
// test instead of hanging it.
var catalogHTTP = http.Client{Timeout: 10 * time.Second}

func catalogHTTPGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := catalogHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// Issue 12 item 6: two catalogs whose coo properties point at each other for a member do
// not hand it back and forth: ownership stays with the catalog that created it, the state
// file is not rewritten, the agent stays idle, and the loop is logged once.
func TestCatalogCOOLoopBetweenTwoCatalogs(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	const catA, catB, member = "cat-a.test.", "cat-b.test.", "looped.test."
	cat := func(name string, serial uint32, coo string) string {
		text := fmt.Sprintf("%s 0 IN SOA invalid. invalid. %d 3600 600 86400 0\n%s 0 IN NS invalid.\n"+
			"version.%s 0 IN TXT \"2\"\nlx.zones.%s 0 IN PTR %s\n", name, serial, name, name, name, member)
		if coo != "" {
			text += fmt.Sprintf("coo.lx.zones.%s 0 IN PTR %s\n", name, coo)
		}
		return text
	}
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: map[string]string{
		catA: cat(catA, 1, ""), catB: cat(catB, 1, ""), member: harness.GenerateZone(member, 1, 8)}})
	stateFile := filepath.Join(t.TempDir(), "catalogs.json")
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", Service: map[string]string{
		"catalog_zones": catA + "," + catB, "catalog_state_file": stateFile, "retry_min": "1"}})
	status := func(name string) catalog.Detail {
		var d catalog.Detail
		if err := json.Unmarshal([]byte(catalogHTTPGet(t, "http://"+a.Config.MetricsListen+"/catalogs/"+name)), &d); err != nil {
			t.Fatalf("/catalogs/%s: %v", name, err)
		}
		return d
	}
	waitApplied := func(name string, serial uint32) {
		t.Helper()
		if !harness.Eventually(15*time.Second, 20*time.Millisecond, func() bool {
			d := status(name)
			return d.Serial != nil && *d.Serial == serial
		}) {
			t.Fatalf("%s serial %d not applied: %+v\n%s", name, serial, status(name).Status, a.Output())
		}
	}
	owner := func() string {
		var st struct {
			Zones map[string]struct{ Catalog string } `json:"zones"`
		}
		data, _ := os.ReadFile(stateFile)
		json.Unmarshal(data, &st)
		return st.Zones[member].Catalog
	}
	waitApplied(catA, 1)
	waitApplied(catB, 1)
	if _, err := harness.ZoneFileSet(a.ZoneFile(member), bogusOrigin); err != nil {
		t.Fatalf("the member was not created: %v", err)
	}
	first := owner()
	if first == "" {
		t.Fatalf("no catalog owns the member; state file:\n%s", catalogFile(stateFile))
	}
	other := map[string]string{catA: catB, catB: catA}[first]

	// The other catalog's coo names the owner, then the owner's coo names the other.
	p.SetZone(t, other, cat(other, 2, first))
	notifyZone(t, a, 0x9a01, other)
	waitApplied(other, 2)
	p.SetZone(t, first, cat(first, 2, other))
	notifyZone(t, a, 0x9a02, first)
	waitApplied(first, 2)

	time.Sleep(300 * time.Millisecond)
	before, err := os.Stat(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	handOvers := strings.Count(a.Output(), "handed over")
	cpu0 := procCPU(t, a.PID())
	time.Sleep(2 * time.Second)
	cpu := procCPU(t, a.PID()) - cpu0
	t.Logf("agent CPU over 2 s with the coo loop in place: %v", cpu)

	if now := owner(); now != first {
		t.Errorf("the member is owned by %s, was %s: ownership must stay put", now, first)
	}
	if after, err := os.Stat(stateFile); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the state file was rewritten during 2 s of an unchanged loop (%v)", err)
	}
	if n := strings.Count(a.Output(), "handed over"); n != handOvers {
		t.Errorf("%d hand-overs logged during 2 s of an unchanged loop", n-handOvers)
	}
	if n := strings.Count(a.Output(), "coo loop"); n != 1 {
		t.Errorf("the coo loop is logged %d times, want once:\n%s", n, a.Output())
	}
	if cpu > 200*time.Millisecond { // idle is ~0; the loop took 390 ms per 2 s here
		t.Errorf("the agent used %v of CPU in 2 s while idle", cpu)
	}
	if _, err := harness.ZoneFileSet(a.ZoneFile(member), bogusOrigin); err != nil {
		t.Errorf("the member is no longer served: %v", err)
	}
	a.CheckAlive(t)
}

// notifyZone sends a NOTIFY for zone and expects the accept reply.
func notifyZone(t *testing.T, a *harness.Agent, id uint16, zone string) {
	t.Helper()
	req := harness.NotifyMsg(id, zone, false)
	expectBytes(t, "NOTIFY "+zone, udp(t, a.Addr(), req, 3*time.Second), harness.Reply(req, 0xa400))
}

func catalogFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// procCPU is the user+system CPU time process pid has used (/proc/PID/stat, fields 14
// and 15, in clock ticks of 1/100 s on Linux).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces; count fields after its closing ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	var utime, stime int64
	fmt.Sscan(fields[11], &utime)
	fmt.Sscan(fields[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// Each transfer engine has its own metrics: the catalog's transfers are counted in
// dnsagent_catalog_transfers_total, not in the zones' dnsagent_transfers_total, and the
// catalog zone itself shows in dnsagent_catalog_zones beside the members in dnsagent_zones.
func TestCatalogMetricsPerEngine(t *testing.T) {
	t.Parallel()
	e := startCatalogEnv(t, "file", nil)
	e.waitServed(40*time.Second, allMembers()...)
	e.waitApplied(1)
	addr := e.a.Config.MetricsListen
	var zoneTransfers, catalogTransfers, zonesIdle, catalogsIdle float64
	if !harness.Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		zoneTransfers = metricValue(t, addr, `dnsagent_transfers_total{`)
		catalogTransfers = metricValue(t, addr, `dnsagent_catalog_transfers_total{`)
		zonesIdle = metricValue(t, addr, `dnsagent_zones{state="idle"}`)
		catalogsIdle = metricValue(t, addr, `dnsagent_catalog_zones{state="idle"}`)
		return zoneTransfers == 50 && catalogTransfers == 1 && zonesIdle == 50 && catalogsIdle == 1
	}) {
		t.Errorf("after one catalog and its 50 members: zone transfers %v (want 50), catalog transfers %v (want 1), "+
			"idle zones %v (want 50), idle catalogs %v (want 1)", zoneTransfers, catalogTransfers, zonesIdle, catalogsIdle)
	}
}

package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"

	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/powerdns"
	"github.com/dnsagent/dnsagent/tests/harness"
)

// pdnsEnv is a private MariaDB with PowerDNS's schema and a pdns_server reading it.
type pdnsEnv struct {
	m      *harness.MariaDB
	dbname string
	p      *harness.PDNS
}

func startPDNSEnv(t *testing.T, opts harness.PDNSOptions) *pdnsEnv {
	t.Helper()
	harness.Require(t, "mariadbd", "mariadb-install-db", "pdns_server", "pdns_control")
	m := harness.StartMariaDB(t)
	name := m.NewPDNSDatabase(t)
	return &pdnsEnv{m: m, dbname: name, p: harness.StartPDNS(t, m, name, opts)}
}

// backendConfig is the agent's [agent:powerdns] configuration for this environment.
func (e *pdnsEnv) backendConfig() powerdns.Config {
	return powerdns.Config{
		DSN:                e.m.DSN(e.dbname),
		Account:            powerdns.DefaultAccount,
		ZoneKind:           powerdns.DefaultZoneKind,
		BatchSize:          powerdns.DefaultBatchSize,
		PDNSControlEnabled: true,
		PDNSControl:        []string{harness.LookPath("pdns_control")},
		PDNSSocketDir:      e.p.SocketDir(),
		NameIndex:          true,
	}
}

func (e *pdnsEnv) backend(t *testing.T) *powerdns.Backend {
	t.Helper()
	b, err := powerdns.New(e.backendConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// pdnsTypesZone has one record of every type the backend stores, each at its own owner,
// in the presentation BIND and miekg/dns use. DS sits at a delegation, where PowerDNS
// must answer it authoritatively although the NS beside it is not.
const pdnsTypesZone = `
types.test. 3600 IN SOA ns1.types.test. hostmaster.types.test. 1 3600 600 86400 300
types.test. 3600 IN NS ns1.types.test.
ns1.types.test. 3600 IN A 192.0.2.1
a.types.test. 300 IN A 192.0.2.10
aaaa.types.test. 300 IN AAAA 2001:db8::10
cname.types.test. 300 IN CNAME target.example.net.
dname.types.test. 300 IN DNAME example.net.
ptr.types.test. 300 IN PTR host.example.net.
mx.types.test. 300 IN MX 10 mail.example.net.
nullmx.types.test. 300 IN MX 0 .
_sip._tcp.types.test. 300 IN SRV 5 20 5060 sip.example.net.
_none._tcp.types.test. 300 IN SRV 0 0 0 .
txt.types.test. 300 IN TXT "a \"quoted\" word" "and back\\slash" "" "semi;colon #hash" "caf\195\169"
spf.types.test. 300 IN SPF "v=spf1 -all"
caa.types.test. 300 IN CAA 0 issue "letsencrypt.org"
caa.types.test. 300 IN CAA 128 iodef "mailto:security@example.com"
naptr.types.test. 300 IN NAPTR 100 10 "U" "E2U+sip" "!^.*$!sip:info@example.com!" .
naptr2.types.test. 300 IN NAPTR 100 50 "S" "SIP+D2U" "" _sip._udp.example.com.
sshfp.types.test. 300 IN SSHFP 1 1 dd465c09cfa51fb45020cc83316fff21b9ec74ac
tlsa.types.test. 300 IN TLSA 3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6
smimea.types.test. 300 IN SMIMEA 3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6
secure.types.test. 300 IN NS ns.example.net.
secure.types.test. 300 IN DS 12345 8 2 49fd46e6c4b45c55d4ac69cbd3cd34ac1afe51de9f6a1cfdd27b8e0f2a8f4e6a
cds.types.test. 300 IN CDS 12345 8 2 49fd46e6c4b45c55d4ac69cbd3cd34ac1afe51de9f6a1cfdd27b8e0f2a8f4e6a
dnskey.types.test. 300 IN DNSKEY 257 3 8 AwEAAagAIKlVZrpC6Ia7gEzahOR+9W29euxhJhVVLOyQbSEW0O8gcCjFFVQUTf6v58fLjwBd0YI0EzrAcQqBGCzh/RStIoO8g0NfnfL2MTJRkxoXbfDaUeVPQuYEhg37NZWAJQ9VnMVDxP/VHL496M/QZxkjf5/Efucp2gaDX6RS6CXpoY68LsvPVjR0ZSwzz1apAzvN9dlzEheX7ICJBBtuA6G3LQpzW5hOA2hzCTMjJPJ8LbqF6dsV6DoBQzgul0sGIcGOYl7OyQdXfZ57relSQageu+ipAdTTJ25AsRTAoub8ONGcLmqrAmRLKBP1dfwhYB4N7knNnulqQxA+Uk1ihz0=
cdnskey.types.test. 300 IN CDNSKEY 257 3 8 AwEAAagAIKlVZrpC6Ia7gEzahOR+9W29euxhJhVVLOyQbSEW0O8gcCjFFVQUTf6v58fLjwBd0YI0EzrAcQqBGCzh/RStIoO8g0NfnfL2MTJRkxoXbfDaUeVPQuYEhg37NZWAJQ9VnMVDxP/VHL496M/QZxkjf5/Efucp2gaDX6RS6CXpoY68LsvPVjR0ZSwzz1apAzvN9dlzEheX7ICJBBtuA6G3LQpzW5hOA2hzCTMjJPJ8LbqF6dsV6DoBQzgul0sGIcGOYl7OyQdXfZ57relSQageu+ipAdTTJ25AsRTAoub8ONGcLmqrAmRLKBP1dfwhYB4N7knNnulqQxA+Uk1ihz0=
hinfo.types.test. 300 IN HINFO "PC-Intel-700mhz" "Debian Linux"
rp.types.test. 300 IN RP admin.types.test. rptxt.types.test.
afsdb.types.test. 300 IN AFSDB 1 afs.example.net.
kx.types.test. 300 IN KX 10 kx.example.net.
loc.types.test. 300 IN LOC 52 22 23.000 N 4 53 32.000 E -2.00m 1m 10000m 10m
cert.types.test. 300 IN CERT PGP 0 0 AwEAAagAIKlVZrpC6Ia7gEzahOR+9W29euxhJhVVLOyQbSEW0O8gcCjFFVQUTf6v58fLjwBd0YI0EzrAcQqBGCzh
cert2.types.test. 300 IN CERT 65000 12345 RSASHA256 AwEAAagAIKlVZrpC6Ia7gEzahOR+9W29euxhJhVVLOyQbSEW0O8gcCjFFVQUTf6v58fLjwBd0YI0EzrAcQqBGCzh
uri.types.test. 300 IN URI 10 1 "https://www.example.com/path?q=1"
openpgpkey.types.test. 300 IN OPENPGPKEY mQENBFn6FQ4BCADe0Rr9nYiy2ZDh5xXP84T2XdD6Kh4XyPKbHbqzJDWHYOq6nnh8E2pUozmHzrprO4Ec3qkZeSY4
dhcid.types.test. 300 IN DHCID AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=
ipseckey.types.test. 300 IN IPSECKEY 10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==
ipseckey2.types.test. 300 IN IPSECKEY 10 3 2 gw.example.net. AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==
eui48.types.test. 300 IN EUI48 00-00-5e-00-53-2a
eui64.types.test. 300 IN EUI64 00-00-5e-ef-10-00-00-2a
nid.types.test. 300 IN NID 10 0014:4fff:ff20:ee64
l32.types.test. 300 IN L32 10 10.1.2.0
l64.types.test. 300 IN L64 10 2001:0db8:1140:1000
lp.types.test. 300 IN LP 10 l64-subnet.example.net.
minfo.types.test. 300 IN MINFO rmail.example.net. email.example.net.
mr.types.test. 300 IN MR newbox.example.net.
csync.types.test. 300 IN CSYNC 66 3 A NS AAAA
svcb.types.test. 300 IN SVCB 1 . alpn=h2 port=8443
svcb0.types.test. 300 IN SVCB 0 svc.example.net.
svcb2.types.test. 300 IN SVCB 16 svc.example.net. mandatory=alpn,port alpn=h2,h3 no-default-alpn port=53 ipv4hint=192.0.2.1,192.0.2.2 ech=AEn+DQBFKwAgACABWIHUGj4u+PIggYXcR5JF0gYk3dCRioBW8uJq9H4mKAAIAAEAAQABAANAEnB1YmxpYy50bHMtZWNoLmRldgAA ipv6hint=2001:db8::1
https.types.test. 300 IN HTTPS 1 . alpn="h3,h2" ipv4hint=192.0.2.1 ipv6hint=2001:db8::1
apl.types.test. 300 IN APL 1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32
zonemd.types.test. 300 IN ZONEMD 2018031500 1 1 fb4b6f3a4c3c8f4a0fbfe7bac6d0d9d8e18b3d0e0c1b5bd04a6d1c5fce2e9f0c1b3d2a4e5f60718293a4b5c6d7e8f901
Mixed-Case.types.test. 300 IN A 192.0.2.11
`

// TestPDNSRecordTypes stores one record of every type the backend accepts and asks
// pdns_server for each: the answer must be the record as the primary would serve it.
// Types the backend refuses must fail the transfer with a message naming the type.
func TestPDNSRecordTypes(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{})
	b := e.backend(t)
	rrs := pdnsParse(t, pdnsTypesZone)
	if err := b.Create(stmtCtx(t), "types.test.", backendtest.Stream(rrs)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, want := range rrs {
		h := want.Header()
		if h.Rrtype == dns.TypeNS && h.Name == "secure.types.test." {
			continue // a delegation: answered as a referral, checked in TestAT_PDNS01
		}
		r := e.p.Query(t, h.Name, h.Rrtype)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			t.Errorf("%s %s: rcode %s AA %v, want an authoritative NOERROR", h.Name, dns.TypeToString[h.Rrtype], dns.RcodeToString[r.Rcode], r.Authoritative)
			continue
		}
		found := false
		for _, got := range r.Answer {
			if dns.IsDuplicate(got, want) && got.Header().Ttl == h.Ttl {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s: pdns_server answers\n%v\nwant %s", h.Name, dns.TypeToString[h.Rrtype], r.Answer, want)
		}
	}

	refused := []struct{ line, why string }{
		{"x.types.test. 300 IN TYPE65000 \\# 2 abcd", "type TYPE65000 cannot be stored in PowerDNS"},
		{"x.types.test. 300 IN NULL \\# 2 abcd", "type NULL cannot be stored in PowerDNS"},
		{"x.types.test. 300 IN HTTPS 1 . key65000=abc", "SvcParam key65000 is unknown to PowerDNS 4.7"},
		{"x.types.test. 300 CH TXT \"chaos\"", "class CH, not IN"}, // every backend refuses it (backend.CheckRecord)
	}
	for _, c := range refused {
		rr, err := dns.NewRR(c.line)
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		zone := append(slices.Clone(rrs[:3]), rr)
		err = b.Replace(stmtCtx(t), "types.test.", backendtest.Stream(zone))
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("Replace with %s: %v, want a refusal saying %q", c.line, err, c.why)
		}
	}
	// The refused replaces left the zone as it was.
	if r := e.p.Query(t, "a.types.test.", dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("after refused replaces a.types.test. A answers %v", r.Answer)
	}
}

// pdnsParse parses one record per non-empty line (miekg's zone parser stumbles over some
// base64 rdata followed by another record; single lines parse fine).
func pdnsParse(t *testing.T, text string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

// pdnsZone has every kind of record acceptance point 1 names, as a BIND primary serves
// it: a delegation with glue, and names under empty non-terminals (ent, b, a.b).
func pdnsZone(serial uint32, extra ...string) string {
	return fmt.Sprintf(`$TTL 300
example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. %d 3600 600 86400 300
example.com. 3600 IN NS ns1.example.com.
ns1.example.com. 3600 IN A 127.0.0.1
example.com. IN A 192.0.2.1
example.com. IN MX 10 mail.example.com.
example.com. IN MX 20 mx.example.net.
example.com. IN CAA 0 issue "letsencrypt.org"
example.com. IN TXT "v=spf1 -all"
mail.example.com. IN A 192.0.2.25
www.example.com. IN A 192.0.2.80
www.example.com. IN AAAA 2001:db8::80
alias.example.com. IN CNAME www.example.com.
_sip._tcp.example.com. IN SRV 10 60 5060 sip.example.com.
sip.example.com. IN A 192.0.2.60
txt.example.com. IN TXT "with \"quotes\" and spaces" "second string" "semi;colon #hash" "back\\slash"
1.2.0.192.example.com. IN PTR www.example.com.
sub.example.com. IN NS ns.sub.example.com.
sub.example.com. IN NS ns.example.net.
ns.sub.example.com. IN A 192.0.2.53
host.ent.example.com. IN A 192.0.2.99
deep.a.b.example.com. IN TXT "deep"
%s
`, serial, strings.Join(extra, "\n"))
}

// pdnsAgent starts an agent with the powerdns backend on e, the primary as its master,
// running pdns_control.
func pdnsAgent(t *testing.T, e *pdnsEnv, p *harness.Primary) *harness.Agent {
	t.Helper()
	return startPDNSAgent(t, e, p, harness.LookPath("pdns_control"))
}

// pdnsAgentOverSocket is pdnsAgent with pdns_control left as it is: the agent sends its
// commands to pdns_server's control socket itself.
func pdnsAgentOverSocket(t *testing.T, e *pdnsEnv, p *harness.Primary) *harness.Agent {
	t.Helper()
	return startPDNSAgent(t, e, p, "pdns_control")
}

func startPDNSAgent(t *testing.T, e *pdnsEnv, p *harness.Primary, pdnsControl string) *harness.Agent {
	t.Helper()
	return harness.StartAgent(t, harness.AgentConfig{
		BackendDriver:    "powerdns",
		Masters:          p.Addr(),
		AllowNotify:      "127.0.0.1",
		QueryDestination: e.p.Addr(),
		Backend: map[string]string{
			"zone_file_path":  "-",
			"dsn":             e.m.DSN(e.dbname),
			"pdns_control":    pdnsControl,
			"pdns_socket_dir": e.p.SocketDir(),
		},
	})
}

// pdnsQueries are the questions whose answers must match the primary's: every name and
// type of the zone, the empty non-terminals, the delegation, a name that does not exist.
func pdnsQueries(t *testing.T, p *harness.Primary, zone string) [][2]string {
	t.Helper()
	seen := map[[2]string]bool{}
	var qs [][2]string
	add := func(name, typ string) {
		q := [2]string{strings.ToLower(name), typ}
		if !seen[q] {
			seen[q] = true
			qs = append(qs, q)
		}
	}
	for _, rr := range p.AXFR(t, zone) {
		add(rr.Header().Name, dns.TypeToString[rr.Header().Rrtype])
	}
	for _, name := range []string{"ent.example.com.", "b.example.com.", "a.b.example.com.", "nx.example.com.", "host.sub.example.com."} {
		add(name, "A")
		add(name, "TXT")
	}
	return qs
}

// pdnsCompare asks the primary and pdns_server the same question over TCP and reports
// how the answers differ: rcode, AA, answer section, and the authority NS records and
// glue of a referral ("" when they agree).
func pdnsCompare(t *testing.T, primary, pdns, name, typ string) string {
	t.Helper()
	ask := func(server string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.StringToType[typ])
		r, err := harness.Exchange("tcp", server, m, 3*time.Second)
		if err != nil {
			t.Fatalf("%s %s at %s: %v", name, typ, server, err)
		}
		return r
	}
	summary := func(r *dns.Msg) string {
		var b strings.Builder
		fmt.Fprintf(&b, "rcode %s aa %v\n", dns.RcodeToString[r.Rcode], r.Authoritative)
		sections := []struct {
			label string
			rrs   []dns.RR
			keep  func(dns.RR) bool
		}{
			{"answer", r.Answer, func(dns.RR) bool { return true }},
			{"authority NS", r.Ns, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeNS }},
			{"glue", r.Extra, func(rr dns.RR) bool {
				return !r.Authoritative && (rr.Header().Rrtype == dns.TypeA || rr.Header().Rrtype == dns.TypeAAAA)
			}},
		}
		for _, sec := range sections {
			var kept []dns.RR
			for _, rr := range sec.rrs {
				if sec.keep(rr) {
					kept = append(kept, rr)
				}
			}
			for _, line := range harness.Canonical(kept) {
				fmt.Fprintf(&b, "%s: %s\n", sec.label, line)
			}
		}
		return b.String()
	}
	want, got := summary(ask(primary)), summary(ask(pdns))
	if want == got {
		return ""
	}
	return fmt.Sprintf("%s %s:\nprimary:\n%spdns_server:\n%s", name, typ, want, got)
}

// pdnsServed polls pdns_server until it answers the zone's SOA with serial (at most
// timeout) and returns how long that took and whether it happened.
func pdnsServed(e *pdnsEnv, zone string, serial uint32, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	ok := harness.Eventually(timeout, 10*time.Millisecond, func() bool {
		s, err := harness.QuerySerial(e.p.Addr(), zone)
		return err == nil && s == serial
	})
	return time.Since(start), ok
}

// TestPDNS01CreateServedLikePrimary is acceptance point 1: a CREATE (opcode 14) makes
// pdns_server answer every record exactly as the primary does, empty non-terminals
// NOERROR without data, within a second of the CREATE reply although PowerDNS's zone
// cache is at its default (300 s). Then point 2 end to end: a NOTIFY after a change makes
// pdns_server serve the new serial and data.
func TestPDNS01CreateServedLikePrimary(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{ZoneCache: true})
	const zone = "example.com."
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: map[string]string{zone: pdnsZone(1)}, IXFRFromDifferences: true})
	a := pdnsAgent(t, e, p)

	req := harness.CreateMsg(0x0101, zone)
	expectBytes(t, "CREATE", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
	// The zone cache runs (300 s): without the agent's rediscover the zone would not be
	// served for minutes. 10 s tells that apart on a loaded machine; it takes milliseconds.
	took, ok := pdnsServed(e, zone, 1, 10*time.Second)
	if !ok {
		t.Fatalf("pdns_server does not serve the new zone 10 s after the CREATE reply")
	}
	t.Logf("pdns_server served the zone %v after the CREATE reply", took)

	for _, q := range pdnsQueries(t, p, zone) {
		if d := pdnsCompare(t, p.Addr(), e.p.Addr(), q[0], q[1]); d != "" {
			t.Errorf("answers differ for %s", d)
		}
	}
	for _, ent := range []string{"ent.example.com.", "b.example.com.", "a.b.example.com."} {
		r := e.p.Query(t, ent, dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !r.Authoritative {
			t.Errorf("empty non-terminal %s: rcode %s, %d answers, AA %v; want NOERROR, no data", ent, dns.RcodeToString[r.Rcode], len(r.Answer), r.Authoritative)
		}
	}

	// Point 2, end to end: a change at the primary and a NOTIFY.
	p.SetZone(t, zone, pdnsZone(2,
		"www.example.com. IN A 192.0.2.81",
		"new.deep.example.com. IN TXT \"added\"",
		"sub2.example.com. IN NS ns.example.net."))
	nreq := harness.NotifyMsg(0x0102, zone, false)
	expectBytes(t, "NOTIFY", udp(t, a.Addr(), nreq, 3*time.Second), harness.Reply(nreq, 0xa400))
	took, ok = pdnsServed(e, zone, 2, 10*time.Second)
	if !ok {
		t.Fatalf("pdns_server does not serve serial 2 10 s after the NOTIFY")
	}
	t.Logf("pdns_server served serial 2 %v after the NOTIFY", took)
	for _, q := range pdnsQueries(t, p, zone) {
		if d := pdnsCompare(t, p.Addr(), e.p.Addr(), q[0], q[1]); d != "" {
			t.Errorf("after the NOTIFY, answers differ for %s", d)
		}
	}
	a.CheckAlive(t)
}

// With PowerDNS's caches at their defaults, pdns_server keeps the REFUSED it answered for
// a name of a zone it did not have yet (packet cache, 20 s). The zone created by a CREATE
// is served as soon as the CREATE is answered all the same: the agent purges the new
// zone's names from the caches too, not only rediscovers. The agent sends both over
// pdns_server's control socket itself here (pdns_control left as it is).
func TestPDNS01CreateServedPastCachedRefusal(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{ZoneCache: true, Caches: true})
	const zone = "example.com."
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{Zones: map[string]string{zone: pdnsZone(1)}})
	a := pdnsAgentOverSocket(t, e, p)
	ask := func() *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("www."+zone, dns.TypeA)
		r, err := harness.Exchange("udp", e.p.Addr(), q, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask(); r.Rcode != dns.RcodeRefused {
		t.Fatalf("before the CREATE: www.%s %s, want REFUSED", zone, dns.RcodeToString[r.Rcode])
	}
	req := harness.CreateMsg(0x0111, zone)
	expectBytes(t, "CREATE", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
	if r := ask(); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("right after the CREATE reply: www.%s %s with %d answers, want the zone's A record (not the cached REFUSED)",
			zone, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	a.CheckAlive(t)
}

// zoneRows counts the rows of zone (by name, and by the id it had) in every table
// PowerDNS keeps per zone.
func zoneRows(t *testing.T, db *sql.DB, id int64, zone string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, table := range []string{"records", "domainmetadata", "comments", "cryptokeys"} {
		var n int
		if err := db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM `+table+` WHERE domain_id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts[table] = n
	}
	var n int
	if err := db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM domains WHERE name = ?`, strings.TrimSuffix(zone, ".")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	counts["domains"] = n
	return counts
}

// TestPDNS03Delete is acceptance point 3: after DELETE no row of the zone is left in any
// table (metadata, comments and keys PowerDNS tools added included), and pdns_server no
// longer answers for it. The agent rediscovers over pdns_server's control socket itself.
func TestPDNS03Delete(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{ZoneCache: true})
	const zone = "example.com."
	p := harness.StartPrimary(t, map[string]string{zone: pdnsZone(1)})
	a := pdnsAgentOverSocket(t, e, p)
	req := harness.CreateMsg(0x0301, zone)
	expectBytes(t, "CREATE", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
	if _, ok := pdnsServed(e, zone, 1, 5*time.Second); !ok {
		t.Fatal("zone not served after CREATE")
	}
	db := e.m.DB(t, e.dbname)
	var id int64
	if err := db.QueryRowContext(stmtCtx(t), `SELECT id FROM domains WHERE name = 'example.com'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`INSERT INTO domainmetadata (domain_id, kind, content) VALUES (?, 'ALSO-NOTIFY', '192.0.2.9')`,
		`INSERT INTO comments (domain_id, name, type, modified_at, account, comment) VALUES (?, 'www.example.com', 'A', 0, 'ops', 'web')`,
		`INSERT INTO cryptokeys (domain_id, flags, active, content) VALUES (?, 257, 1, 'Private-key-format: v1.2')`,
	} {
		if _, err := db.ExecContext(stmtCtx(t), stmt, id); err != nil {
			t.Fatal(err)
		}
	}
	del := harness.DeleteMsg(0x0302, zone)
	expectBytes(t, "DELETE", udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf400))
	for table, n := range zoneRows(t, db, id, zone) {
		if n != 0 {
			t.Errorf("after DELETE %d rows of the zone left in %s", n, table)
		}
	}
	// PowerDNS's zone cache is at its default: only the rediscover makes it forget.
	for _, name := range []string{zone, "www.example.com."} {
		r := e.p.Query(t, name, dns.TypeSOA)
		if r.Rcode != dns.RcodeRefused && r.Rcode != dns.RcodeNotAuth {
			t.Errorf("after DELETE pdns_server answers %s SOA with %s, want REFUSED or NOTAUTH", name, dns.RcodeToString[r.Rcode])
		}
	}
	a.CheckAlive(t)
}

// TestPDNS04DatabaseDownMidReplace is acceptance point 4 at the backend level (retrying
// later is the transfer engine's part): MariaDB killed while a replace is writing leaves
// the zone's old complete version, pdns_server serves it once MariaDB is back, and the
// next Replace succeeds.
func TestPDNS04DatabaseDownMidReplace(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{})
	b := e.backend(t)
	const zone, n = "big.example.", 60000
	// Every statement ends within the test's budget, even on a cluster that stops answering.
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Batches(backendtest.Zone(zone, 1, n), 1000)...)); err != nil {
		t.Fatal(err)
	}
	db := e.m.DB(t, e.dbname)
	// The replace is in its middle once half of the new version's rows are written, as a
	// session reading uncommitted rows sees.
	writing := make(chan bool, 1)
	go func() {
		writing <- harness.Eventually(30*time.Second, 5*time.Millisecond, func() bool {
			ctx, cancel := context.WithTimeout(ctx, stmtTimeout)
			defer cancel()
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadUncommitted, ReadOnly: true})
			if err != nil {
				return false
			}
			defer tx.Rollback()
			var written int
			tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE type = 'TXT' AND content LIKE '"serial 2 %'`).Scan(&written)
			return written > n/4 // a TXT record every other one
		})
	}()
	start := time.Now()
	done := replaceMidway(t, writing, "the replace writing the new version (30 s)", func() error {
		return b.Replace(ctx, zone, backendtest.Stream(backendtest.Batches(backendtest.Zone(zone, 2, n), 1000)...))
	})
	e.m.Kill(t)
	err := within(t, done, 2*time.Minute, "Replace ending after MariaDB was killed")
	if err == nil {
		t.Fatal("Replace succeeded although MariaDB was killed in its middle")
	}
	// The lost connection and the refused ones after it are retried (0.5 + 1 + 2 s).
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("Replace gave up after %v: the lost connection was not retried", took)
	}
	t.Logf("Replace with MariaDB gone: %v", err)

	e.m.Start(t)
	if serial, err := b.Serial(ctx, zone); err != nil || serial != 1 {
		t.Fatalf("after the restart Serial = %d, %v; want the old version 1", serial, err)
	}
	var rows int
	e.m.DB(t, e.dbname).QueryRowContext(ctx, `SELECT COUNT(*) FROM records`).Scan(&rows)
	if rows != n+2 {
		t.Errorf("%d rows after the restart, want the old version's %d", rows, n+2)
	}
	// pdns_server reconnects and serves the old version, complete.
	if _, ok := pdnsServed(e, zone, 1, 10*time.Second); !ok {
		t.Fatal("pdns_server does not serve serial 1 after MariaDB came back")
	}
	if r := e.p.Query(t, fmt.Sprintf("host-%d.%s", n-1, zone), dns.TypeTXT); len(r.Answer) != 1 ||
		!strings.Contains(r.Answer[0].String(), "serial 1 record") {
		t.Errorf("last record of the old version: %v", r.Answer)
	}

	if err := b.Replace(ctx, zone, backendtest.Stream(backendtest.Batches(backendtest.Zone(zone, 2, n), 1000)...)); err != nil {
		t.Fatalf("the next Replace: %v", err)
	}
	if _, ok := pdnsServed(e, zone, 2, 5*time.Second); !ok {
		t.Fatal("pdns_server does not serve serial 2 after the next Replace")
	}
}

// TestPDNS04EngineRetriesAfterOutage is acceptance point 4 end to end: MariaDB shut down
// while the agent replaces a zone after a NOTIFY; the zone keeps its old complete
// version, and once MariaDB is back the transfer engine's retry brings the new version
// without another NOTIFY.
func TestPDNS04EngineRetriesAfterOutage(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{})
	const zone, n = "example.com.", 40000
	z := harness.NewZone(zone, 1, n)
	// No IXFR history at the primary: the change arrives as a full transfer, and with the
	// diff index off (diff_index_dir empty) it is a Replace.
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	cfg := harness.AgentConfig{
		BackendDriver: "powerdns", Masters: p.Addr(), AllowNotify: "127.0.0.1",
		Service: map[string]string{"retry_min": "1", "diff_index_dir": ""},
		Backend: map[string]string{"zone_file_path": "-", "dsn": e.m.DSN(e.dbname),
			"pdns_control": harness.LookPath("pdns_control"), "pdns_socket_dir": e.p.SocketDir()},
	}
	a := harness.StartAgent(t, cfg)
	req := harness.CreateMsg(0x0401, zone)
	expectBytes(t, "CREATE", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
	db := e.m.DB(t, e.dbname)
	var before int
	db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM records`).Scan(&before)

	z2 := z.Next(0, 10)
	p.SetZone(t, zone, z2.Text())
	// In the middle: the old rows are deleted and fewer than half are written again, as
	// a session reading uncommitted rows sees.
	midway := make(chan bool, 1)
	go func() {
		midway <- harness.Eventually(30*time.Second, 2*time.Millisecond, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), stmtTimeout)
			defer cancel()
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadUncommitted, ReadOnly: true})
			if err != nil {
				return false
			}
			defer tx.Rollback()
			var rows int
			tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM records`).Scan(&rows)
			return rows < before/2
		})
	}()
	nreq := harness.NotifyMsg(0x0402, zone, false)
	expectBytes(t, "NOTIFY", udp(t, a.Addr(), nreq, 3*time.Second), harness.Reply(nreq, 0xa400))
	if !<-midway {
		t.Fatal("never saw the replace in its middle")
	}
	e.m.Stop(t) // a clean shutdown here; the backend-level test kills it
	if !harness.Eventually(20*time.Second, 20*time.Millisecond, func() bool {
		return strings.Contains(a.Output(), "powerdns backend: replace "+zone)
	}) {
		t.Fatalf("the agent did not report the failed replace:\n%s", a.Output())
	}
	e.m.Start(t)
	// One snapshot of the zone: the old version, complete (or, if the engine's retry
	// was quicker than this check, the new one, complete), never a mix.
	ctx := stmtCtx(t)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	var soa string
	tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM records`).Scan(&rows)
	tx.QueryRowContext(ctx, `SELECT content FROM records WHERE type = 'SOA'`).Scan(&soa)
	tx.Rollback()
	switch serial, _ := strconv.Atoi(strings.Fields(soa + " x x x")[2]); {
	case serial == 1 && rows == before:
		t.Logf("after the outage the zone is the old version, complete (%d rows)", rows)
	case serial == 2 && rows == before+10:
		t.Logf("after the outage the zone is already the new version, complete (%d rows)", rows)
	default:
		t.Errorf("after the outage: %d rows, SOA %q; want the old version (%d rows, serial 1) or the new one", rows, soa, before)
	}
	took, ok := pdnsServed(e, zone, z2.Serial, 30*time.Second)
	if !ok {
		t.Fatalf("pdns_server does not serve serial %d 30 s after MariaDB came back; agent output:\n%s", z2.Serial, a.Output())
	}
	t.Logf("new version served %v after MariaDB came back, without another NOTIFY", took)
	a.CheckAlive(t)
}

// TestPDNS05NotOwned is acceptance point 5: a zone in the database with another account
// is not listed, and CREATE and DELETE of it fail clearly without touching a row.
func TestPDNS05NotOwned(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{})
	const zone = "example.com."
	db := e.m.DB(t, e.dbname)
	for _, stmt := range []string{
		`INSERT INTO domains (name, type, account) VALUES ('example.com', 'NATIVE', 'operator')`,
		`INSERT INTO records (domain_id, name, type, content, ttl, prio, auth) SELECT id, 'example.com', 'SOA', 'ns1.example.com hostmaster.example.com 77 3600 600 86400 300', 3600, 0, 1 FROM domains`,
		`INSERT INTO records (domain_id, name, type, content, ttl, prio, auth) SELECT id, 'www.example.com', 'A', '198.51.100.7', 300, 0, 1 FROM domains`,
	} {
		if _, err := db.ExecContext(stmtCtx(t), stmt); err != nil {
			t.Fatal(err)
		}
	}
	var id int64
	db.QueryRowContext(stmtCtx(t), `SELECT id FROM domains WHERE name = 'example.com'`).Scan(&id)
	snapshot := func() string {
		ctx, cancel := context.WithTimeout(t.Context(), stmtTimeout)
		defer cancel()
		rows, err := db.QueryContext(ctx, `SELECT CONCAT_WS('|', name, type, content, ttl, prio, auth) FROM records WHERE domain_id = ?`, id)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		sort.Strings(out)
		var acct string
		db.QueryRowContext(ctx, `SELECT CONCAT_WS('|', name, type, account) FROM domains WHERE id = ?`, id).Scan(&acct)
		return acct + "\n" + strings.Join(out, "\n")
	}
	before := snapshot()

	p := harness.StartPrimary(t, map[string]string{zone: pdnsZone(1)})
	a := pdnsAgent(t, e, p)
	req := harness.CreateMsg(0x0501, zone)
	expectBytes(t, "CREATE of a zone the agent does not own", udp(t, a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf002))
	notScheduled(t, a, zone)
	del := harness.DeleteMsg(0x0502, zone)
	expectBytes(t, "DELETE of a zone the agent does not own", udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf402)) // AA: as Designate
	udp(t, a.Addr(), harness.NotifyMsg(0x0503, zone, false), 3*time.Second)
	if !harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
		out := a.Output() // quotes may be escaped by the log format
		return strings.Contains(out, "operator") && strings.Contains(out, "not the agent's")
	}) {
		t.Errorf("the agent's log does not say whose zone it is:\n%s", a.Output())
	}
	if after := snapshot(); after != before {
		t.Errorf("the operator's zone changed:\nbefore %s\nafter  %s", before, after)
	}
	b := e.backend(t)
	if zones, err := b.Zones(stmtCtx(t)); err != nil || len(zones) != 0 {
		t.Errorf("Zones = %v, %v; want none", zones, err)
	}
	if r := e.p.Query(t, "www.example.com.", dns.TypeA); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "198.51.100.7") {
		t.Errorf("pdns_server no longer serves the operator's record: %v", r.Answer)
	}
	a.CheckAlive(t)
}

// TestPDNS06Conformance is acceptance point 6: the conformance suite against MariaDB with
// PowerDNS's schema (also run in backend/powerdns).
func TestPDNS06Conformance(t *testing.T) {
	t.Parallel()
	harness.Require(t, "mariadbd", "mariadb-install-db")
	m := harness.StartMariaDB(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		cfg := powerdns.Config{DSN: m.DSN(m.NewPDNSDatabase(t)), Account: powerdns.DefaultAccount,
			ZoneKind: powerdns.DefaultZoneKind, BatchSize: powerdns.DefaultBatchSize, NameIndex: true}
		b, err := powerdns.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// With dnssec on, the backend runs pdnsutil rectify-zone after each change: a zone the
// operator signed (pdnsutil secure-zone) gets its ordername filled, and pdns_server
// proves non-existence with signed NSEC records after a replace and an incremental
// change alike.
func TestPDNSDNSSECRectify(t *testing.T) {
	t.Parallel()
	harness.Require(t, "pdnsutil")
	e := startPDNSEnv(t, harness.PDNSOptions{})
	cfg := e.backendConfig()
	cfg.DNSSEC = true
	cfg.PDNSUtil = []string{harness.LookPath("pdnsutil"), "--config-dir=" + e.p.ConfigDir()}
	b, err := powerdns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const zone = "signed.test."
	ctx := boundedCtx(t, 2*time.Minute)
	if err := b.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 1, 10))); err != nil {
		t.Fatal(err)
	}
	pdnsutil := func(args ...string) {
		t.Helper()
		cmdCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cmdCtx, cfg.PDNSUtil[0], append(cfg.PDNSUtil[1:], args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pdnsutil %v: %v\n%s", args, err, out)
		}
	}
	pdnsutil("secure-zone", strings.TrimSuffix(zone, "."))

	db := e.m.DB(t, e.dbname)
	nullOrdernames := func() int {
		// ENT rows keep a NULL ordername in NSEC mode: rectify-zone only orders them for
		// NSEC3, where they need hashes of their own.
		var n int
		db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM records WHERE auth = 1 AND ordername IS NULL AND type IS NOT NULL`).Scan(&n)
		return n
	}
	signedDenial := func(what string) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("nx.host-3."+zone, dns.TypeA)
		m.SetEdns0(1232, true)
		r, err := harness.Exchange("tcp", e.p.Addr(), m, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var nsec, sig bool
		for _, rr := range r.Ns {
			switch rr.Header().Rrtype {
			case dns.TypeNSEC, dns.TypeNSEC3:
				nsec = true
			case dns.TypeRRSIG:
				sig = true
			}
		}
		if r.Rcode != dns.RcodeNameError || !nsec || !sig {
			t.Errorf("%s: NXDOMAIN with DO: rcode %s, authority %v; want signed NSEC proof", what, dns.RcodeToString[r.Rcode], r.Ns)
		}
	}

	if err := b.Replace(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 2, 10))); err != nil {
		t.Fatal(err)
	}
	if n := nullOrdernames(); n != 0 {
		t.Errorf("after Replace %d authoritative rows have no ordername", n)
	}
	signedDenial("after Replace")

	add, _ := dns.NewRR("x.y." + zone + " 300 IN A 192.0.2.1")
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{
		Old: backendtest.Zone(zone, 2, 0)[0].(*dns.SOA), New: backendtest.Zone(zone, 3, 0)[0].(*dns.SOA), Added: []dns.RR{add},
	}}}
	if err := b.Apply(ctx, zone, cs); err != nil {
		t.Fatal(err)
	}
	if n := nullOrdernames(); n != 0 {
		t.Errorf("after Apply %d authoritative rows have no ordername", n)
	}
	signedDenial("after Apply")
	if r := e.p.Query(t, "y."+zone, dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("new empty non-terminal y.%s: %s %v", zone, dns.RcodeToString[r.Rcode], r.Answer)
	}
}

// Issue 12 item 4, against pdns_server reading the rows: a record the primary's stream
// repeats (or repeats with its owner in another case) is one record (RFC 2181 §5), so one
// delete makes pdns_server stop serving it; an IXFR whose intermediate step holds a type
// PowerDNS cannot store applies its net change; a change whose result holds such a type
// fails naming it, and pdns_server keeps serving the old version.
func TestPDNSDuplicatesAndNetChange(t *testing.T) {
	t.Parallel()
	e := startPDNSEnv(t, harness.PDNSOptions{})
	b := e.backend(t)
	ctx := boundedCtx(t, 2*time.Minute)
	const zone = "dup.test."
	soa := func(serial uint32) *dns.SOA {
		return pdnsParse(t, fmt.Sprintf("dup.test. 3600 IN SOA ns1.dup.test. hostmaster.dup.test. %d 3600 600 86400 300", serial))[0].(*dns.SOA)
	}
	rrs := append([]dns.RR{soa(1)}, pdnsParse(t, `
dup.test. 3600 IN NS ns1.dup.test.
ns1.dup.test. 3600 IN A 192.0.2.1
www.dup.test. 300 IN A 192.0.2.2
WWW.Dup.Test. 300 IN A 192.0.2.2
www.dup.test. 300 IN A 192.0.2.2
`)...)
	if err := b.Create(ctx, zone, backendtest.Stream(rrs)); err != nil {
		t.Fatal(err)
	}
	answers := func(name string, typ uint16) []dns.RR {
		t.Helper()
		r := e.p.Query(t, name, typ)
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			t.Fatalf("%s %s: rcode %s", name, dns.TypeToString[typ], dns.RcodeToString[r.Rcode])
		}
		return r.Answer
	}
	db := e.m.DB(t, e.dbname)
	rowsOf := func(name string) int {
		var n int
		if err := db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM records WHERE name = ? AND type IS NOT NULL`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rowsOf("www.dup.test"); n != 1 {
		t.Errorf("a record three times in the zone: %d rows, want 1", n)
	}

	// An IXFR adding the same record twice in two cases, then deleting it once.
	apply := func(from uint32, steps ...backend.Step) error {
		cs := &backend.ChangeSet{Zone: zone}
		for i, s := range steps {
			s.Old, s.New = soa(from+uint32(i)), soa(from+uint32(i)+1)
			cs.Steps = append(cs.Steps, s)
		}
		return b.Apply(ctx, zone, cs)
	}
	if err := apply(1, backend.Step{Added: pdnsParse(t, "new.dup.test. 300 IN A 192.0.2.3\nNEW.dup.test. 300 IN A 192.0.2.3")}); err != nil {
		t.Fatal(err)
	}
	if n := rowsOf("new.dup.test"); n != 1 {
		t.Errorf("a record added twice: %d rows, want 1", n)
	}
	if err := apply(2, backend.Step{Deleted: pdnsParse(t, "www.dup.test. 300 IN A 192.0.2.2\nNew.Dup.Test. 300 IN A 192.0.2.3")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www.dup.test.", "new.dup.test."} {
		if got := answers(name, dns.TypeA); len(got) != 0 {
			t.Errorf("%s A after its delete: pdns_server still answers %v", name, got)
		}
	}

	// Step 1 adds records PowerDNS cannot store, step 2 deletes them again: the net change
	// (one A under a new empty non-terminal) is applied and served.
	odd := pdnsParse(t, "tmp.dup.test. 300 IN TYPE65000 \\# 2 abcd\ntmp.dup.test. 300 IN NSEC www.dup.test. A RRSIG NSEC")
	if err := apply(3,
		backend.Step{Added: odd},
		backend.Step{Deleted: odd, Added: pdnsParse(t, "host.ent.dup.test. 300 IN A 192.0.2.4")},
	); err != nil {
		t.Fatalf("IXFR whose intermediate step holds unstorable types: %v", err)
	}
	if s, err := harness.QuerySerial(e.p.Addr(), zone); err != nil || s != 5 {
		t.Errorf("pdns_server serves serial %d (%v), want 5", s, err)
	}
	if got := answers("host.ent.dup.test.", dns.TypeA); len(got) != 1 {
		t.Errorf("host.ent.dup.test. A: %v, want the added record", got)
	}
	if r := e.p.Query(t, "ent.dup.test.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("empty non-terminal ent.dup.test.: %s %v, want NOERROR without data", dns.RcodeToString[r.Rcode], r.Answer)
	}

	// A result PowerDNS cannot store: refused naming the type, the old version served.
	err := apply(5, backend.Step{Added: odd[:1]})
	if err == nil || errors.Is(err, backend.ErrInconsistent) || !strings.Contains(err.Error(), "type TYPE65000 cannot be stored in PowerDNS") {
		t.Errorf("Apply of a change leaving a TYPE65000 record = %v, want an error naming the type", err)
	}
	if s, err := harness.QuerySerial(e.p.Addr(), zone); err != nil || s != 5 {
		t.Errorf("after the refused change pdns_server serves serial %d (%v), want 5", s, err)
	}
}

// The name index (name_index, on by default) is a virtual column and an index the agent
// adds to PowerDNS's records table: created once, by two backends at once without harm,
// and pdns_server and pdnsutil, whose queries name their columns, serve and check zones
// as before.
func TestPDNSNameIndex(t *testing.T) {
	t.Parallel()
	harness.Require(t, "pdnsutil")
	e := startPDNSEnv(t, harness.PDNSOptions{})
	db := e.m.DB(t, e.dbname)
	indexed := func() bool {
		var n int
		if err := db.QueryRowContext(stmtCtx(t), `SELECT COUNT(*) FROM information_schema.STATISTICS
			WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'records' AND INDEX_NAME = 'dnsagent_parent'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	cfg := e.backendConfig()
	cfg.NameIndex = false
	off, err := powerdns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	const zone = "idx.test."
	ctx := boundedCtx(t, 2*time.Minute)
	if err := off.Create(ctx, zone, backendtest.Stream(backendtest.Zone(zone, 1, 50))); err != nil {
		t.Fatal(err)
	}
	if err := off.Sweep(ctx); err != nil || indexed() {
		t.Fatalf("name_index = false: Sweep = %v, index created %v; want neither", err, indexed())
	}
	// Two agents starting at once.
	errs := make(chan error, 2)
	for range 2 {
		b := e.backend(t)
		go func() { errs <- b.Sweep(ctx) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Sweep creating the name index: %v", err)
		}
	}
	if !indexed() {
		t.Fatal("no index dnsagent_parent on records after Sweep")
	}
	b := e.backend(t)
	cs := &backend.ChangeSet{Zone: zone, Steps: []backend.Step{{
		Old: backendtest.Zone(zone, 1, 0)[0].(*dns.SOA), New: backendtest.Zone(zone, 2, 0)[0].(*dns.SOA),
		Added: pdnsParse(t, "x.y.idx.test. 300 IN A 192.0.2.9"),
	}}}
	if err := b.Apply(ctx, zone, cs); err != nil {
		t.Fatal(err)
	}
	if s, err := harness.QuerySerial(e.p.Addr(), zone); err != nil || s != 2 {
		t.Errorf("pdns_server serves serial %d (%v), want 2", s, err)
	}
	if r := e.p.Query(t, "x.y.idx.test.", dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("x.y.idx.test. A: %v", r.Answer)
	}
	if r := e.p.Query(t, "y.idx.test.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("empty non-terminal y.idx.test.: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	out, err := exec.CommandContext(ctx, harness.LookPath("pdnsutil"), "--config-dir="+e.p.ConfigDir(), "check-zone", "idx.test").CombinedOutput()
	if err != nil {
		t.Errorf("pdnsutil check-zone with the extra column: %v\n%s", err, out)
	}
}

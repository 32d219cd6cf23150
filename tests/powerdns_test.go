package tests

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

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
	if err := b.Create(t.Context(), "types.test.", backendtest.Stream(rrs)); err != nil {
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
		{"x.types.test. 300 IN NSEC y.types.test. A RRSIG NSEC", "type NSEC cannot be stored in PowerDNS: DNSSEC"},
		{"x.types.test. 300 IN RRSIG A 8 3 300 20300101000000 20200101000000 12345 types.test. AwEAAagAIKlVZrpC6Ia7gEzahOR+9W29euxhJhVVLOyQbSEW0O8g", "type RRSIG cannot be stored in PowerDNS: DNSSEC"},
		{"x.types.test. 300 IN NSEC3PARAM 1 0 0 -", "type NSEC3PARAM cannot be stored in PowerDNS: DNSSEC"},
		{"x.types.test. 300 IN TYPE65280 \\# 2 abcd", "type TYPE65280 cannot be stored in PowerDNS"},
		{"x.types.test. 300 IN NULL \\# 2 abcd", "type NULL cannot be stored in PowerDNS"},
		{"x.types.test. 300 IN HTTPS 1 . key65000=abc", "SvcParam key65000 is unknown to PowerDNS 4.7"},
		{"x.types.test. 300 CH TXT \"chaos\"", "PowerDNS serves class IN only"},
	}
	for _, c := range refused {
		rr, err := dns.NewRR(c.line)
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		zone := append(slices.Clone(rrs[:3]), rr)
		err = b.Replace(t.Context(), "types.test.", backendtest.Stream(zone))
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

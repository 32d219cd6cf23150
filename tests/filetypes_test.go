package tests

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// everyType is a zone holding every record type BIND 9.18 serves from a master file (MD,
// MF and UINFO it refuses; NXT, obsolete since RFC 3755, miekg/dns cannot unpack), names with '$', ';', '"', '\', '(', ')' and spaces in labels,
// and TXT strings of 255 octets. Written by hand for named.
var everyType = "$ORIGIN example.com.\n$TTL 300\n" + `
example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 300
example.com. IN NS ns1.example.com.
ns1 IN A 127.0.0.1
ns1 IN AAAA ::1
www IN CNAME ns1
ptr IN PTR host.example.net.
mx IN MX 10 mail.example.net.
txt IN TXT "one" "two with spaces" "semi;colon" "quote\"d" "back\\slash" "\255\000bin"
hinfo IN HINFO "PC Intel" "Linux 6"
rp IN RP admin.example.net. txt.example.com.
afsdb IN AFSDB 1 afs.example.net.
srv IN SRV 10 20 443 target.example.net.
_443._tcp IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
smimea IN SMIMEA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
sshfp IN SSHFP 4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
naptr IN NAPTR 100 10 "S" "SIP+D2U" "!^.*$!sip:info@example.net!" _sip._udp.example.net.
naptr2 IN NAPTR 100 10 "" "" "" replace.example.net.
loc IN LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m
loc2 IN LOC 60 9 0.510 N 24 39 0.000 E 10.00m 20.00m 2000.00m 20.00m
uri IN URI 10 1 "ftp://ftp1.example.com/public"
caa IN CAA 0 issue "letsencrypt.org"
caa IN CAA 128 tbs "Unknown"
caa IN CAA 0 iodef "mailto:security@example.net"
ds IN DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118
ds IN DS 60485 13 2 D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A
dnskey IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
rrsig IN RRSIG A 13 2 300 20300101000000 20200101000000 12345 example.com. mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
nsec IN NSEC www.example.com. A MX RRSIG NSEC TYPE65000
nsec3 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG
nsec3b IN NSEC3 1 0 0 - 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR
example.com. IN NSEC3PARAM 1 0 0 -
cds IN CDS 60485 13 2 D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A
cdnskey IN CDNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
cert IN CERT PGP 0 0 aGVsbG8gd29ybGQ=
cert2 IN CERT 1 12345 8 aGVsbG8gd29ybGQ=
dname IN DNAME example.net.
openpgpkey IN OPENPGPKEY aGVsbG8gd29ybGQ=
example.com. IN CSYNC 1 3 A NS AAAA
example.com. IN ZONEMD 1 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
svcb IN SVCB 1 . alpn=h2,h3 no-default-alpn port=8443 ipv4hint=192.0.2.1 ech=AEX+DQBB ipv6hint=2001:db8::1
svcb0 IN SVCB 0 target.example.net.
https IN HTTPS 1 . alpn=h3 no-default-alpn mandatory=alpn
https2 IN HTTPS 1 svc.example.net. key65000 key65001=abc
unk IN TYPE65000 \# 4 0A000001
unk0 IN TYPE65001 \# 0
ipseckey IN IPSECKEY 10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==
dhcid IN DHCID AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=
kx IN KX 10 kx.example.net.
rt IN RT 10 rt.example.net.
eui48 IN EUI48 00-00-5e-00-53-2a
eui64 IN EUI64 00-00-5e-ef-10-00-00-2a
nid IN NID 10 0014:4fff:ff20:ee64
l32 IN L32 10 10.1.2.0
l64 IN L64 10 2001:0db8:1140:1000
lp IN LP 10 l64.example.com.
spf IN SPF "v=spf1 -all"
apl IN APL 1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32
minfo IN MINFO rm.example.net. em.example.net.
mb IN MB mb.example.net.
mg IN MG mg.example.net.
mr IN MR mr.example.net.
x25 IN X25 "311061700956"
isdn IN ISDN "150862028003217" "004"
px IN PX 10 map822.example.net. mapx400.example.net.
gpos IN GPOS "-32.6882" "116.8652" "10.0"
nsap IN NSAP 0x47000580005a0000000001e133ffffff00016100
kk IN KEY 256 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
hip IN HIP 2 200100107B1A74DF365639CC39F1D578 AwEAAbdxyhNuSutc5EMzxTs9LBPCIkOFH8cIvM4p9+LrV4e19WzK00+CI6zBCQTdtWsuxKbWIy87UOoJTwkUs7lBu+Upr1gsNrut79ryra+bSRGQb1slImA8YVJyuIDsj7kwzG7jnERNqnWxZ48AWkskmdHaVDP4BcelrTI3rMXdXF5D rvs.example.net.
talink IN TALINK prev.example.net. next.example.net.
ninfo IN NINFO "info"
rkey IN RKEY 0 3 13 aGVsbG8gd29ybGQ=
amtrelay IN AMTRELAY 10 0 1 203.0.113.15
doa IN DOA 0 1 2 "" aHR0cHM6Ly93d3cuaXNjLm9yZy8=
avc IN AVC "app-name:WOLFGANG|app-class:OAM"
ta IN TA 60485 13 2 D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A
a\$b IN A 192.0.2.1
\$start IN A 192.0.2.2
semi\;colon IN A 192.0.2.3
q\"uote IN A 192.0.2.4
back\\slash IN A 192.0.2.5
par\(en\) IN A 192.0.2.6
sp\ ace IN A 192.0.2.7
cname-odd IN CNAME a\$b.example.com.
mx-odd IN MX 5 sp\ ace.example.com.
wks IN WKS 192.0.2.1 6 25 80
a6 IN A6 0 2001:db8::1
sink IN SINK 1 0 0 aGVsbG8=
eid IN EID 0123456789abcdef
nimloc IN NIMLOC 0123456789abcdef
atma IN ATMA +358400123456
null IN NULL \# 3 010203
sig IN SIG A 13 2 300 20300101000000 20200101000000 12345 example.com. mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
dlv IN DLV 60485 13 2 D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A
resinfo IN RESINFO "qnamemin" "exterr=15-17"
txtdollar IN TXT "price $5" "a;b"
caa2 IN CAA 0 issuewild ";"
` + `txt255 IN TXT "` + strings.Repeat("a", 255) + `" "x" "` + strings.Repeat("b", 254) + `\\"` + "\n"

// Issue 12, item 7 and acceptance 4: the file backend's output for a zone of every type is
// accepted by named-checkzone, nsd-checkzone and kzonecheck, and knotd and nsd loading the
// agent's file serve exactly what the BIND primary serves.
func TestFileOutputEveryTypeLoads(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named-checkzone", "nsd-checkzone", "kzonecheck")
	p := harness.StartPrimary(t, map[string]string{zone: everyType})
	want := harness.AXFRSet(p.AXFR(t, zone))
	records := 0
	for _, l := range strings.Split(everyType, "\n") {
		if l != "" && l[0] != '$' {
			records++
		}
	}
	if len(want) != records {
		t.Fatalf("named serves %d records, the zone file has %d", len(want), records)
	}

	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1"})
	create(t, a, 0x1204)
	file := a.ZoneFile(zone)
	origin := strings.TrimSuffix(zone, ".")
	for _, check := range [][]string{
		// check-names ignore, as named.conf says for the primary: the owner names with '$'
		// or spaces are not host names.
		{"named-checkzone", "-k", "ignore", "-i", "none", origin, file},
		{"nsd-checkzone", origin, file},
		{"kzonecheck", "-o", origin, file},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, harness.LookPath(check[0]), check[1:]...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s refuses the agent's file: %v\n%s", strings.Join(check, " "), err, out)
		}
	}
	for _, start := range []func(testing.TB, harness.ServerOptions) *harness.Server{harness.StartKnot, harness.StartNSD} {
		s := start(t, harness.ServerOptions{Files: map[string]string{zone: file}})
		if d := harness.DiffSets(want, harness.AXFRSet(s.AXFR(t, zone)), 10); d != "" {
			t.Errorf("%s loading the agent's file serves other records than the primary: %s", s.Name(), d)
		}
	}
}

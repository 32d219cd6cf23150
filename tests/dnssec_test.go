package tests

// End-to-end tests of issue 18, signed zones: a BIND primary signs one zone with NSEC and
// one with NSEC3 (dnssec-policy, inline signing); every backend serves them as the
// primary does, and delv, trusting only the primary's key, validates positive answers,
// wildcards, NXDOMAIN and NODATA from each backend's server, after CREATE and after a
// change that arrives by IXFR.

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/tests/harness"
)

// signedZoneText is the unsigned zone the primary signs: an empty non-terminal (b.c), a
// wildcard, a delegation with glue and a secure one (DS). The SOA TTL equals its minimum
// so the negative TTL is one number, whichever of the two a server uses (RFC 9077).
func signedZoneText(zone string, serial uint32, changed bool) string {
	text := fmt.Sprintf(`$ORIGIN %s
$TTL 300
@ IN SOA ns1 hostmaster %d 3600 600 86400 300
@ NS ns1
ns1 A 192.0.2.1
sub NS ns1.sub
ns1.sub A 192.0.2.53
sec NS ns1.sec
sec DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns1.sec A 192.0.2.54
*.wild TXT "wild"
`, zone, serial)
	// Enough other names that the change is a small part of the signed zone: named sends
	// the whole zone instead of an IXFR larger than it (max-ixfr-ratio).
	for i := range 60 {
		text += fmt.Sprintf("h%d A 192.0.2.%d\n", i, 100+i)
	}
	if !changed {
		return text + "www A 192.0.2.2\na.b.c TXT \"deep\"\n"
	}
	// www changes, a.b.c (and with it the ENTs b.c and c) goes, fresh and q.r (ENT r) come.
	return text + "www A 192.0.2.99\nfresh A 192.0.2.7\nq.r TXT \"new\"\n"
}

// signedQuery is one question and what delv must conclude from the answer.
type signedQuery struct {
	name, qtype string
	want        string // "validated", "nxdomain" or "nodata"
}

var (
	signedQueriesCreate = []signedQuery{
		{"www", "A", "validated"}, {"x.wild", "TXT", "validated"}, {"@", "DNSKEY", "validated"},
		{"nosuch", "A", "nxdomain"}, {"zz.b.c", "A", "nxdomain"},
		{"www", "TXT", "nodata"}, {"b.c", "A", "nodata"}, {"@", "AAAA", "nodata"},
	}
	signedQueriesChanged = []signedQuery{
		{"www", "A", "validated"}, {"fresh", "A", "validated"}, {"q.r", "TXT", "validated"}, {"x.wild", "TXT", "validated"},
		{"a.b.c", "TXT", "nxdomain"}, {"c", "A", "nxdomain"}, {"nosuch", "A", "nxdomain"},
		{"fresh", "TXT", "nodata"}, {"r", "A", "nodata"},
	}
)

// signedBackend is one agent on one backend and the server that serves what it wrote.
type signedBackend struct {
	name   string
	a      *harness.Agent
	server string                  // ip:port answering for the zones
	loaded func(zone string) error // after the agent wrote the zone: make the server load it
	named  *harness.BackendNamed   // bind9: the backend named
}

func TestDNSSECSignedZones(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc", "delv", "mariadbd", "mariadb-install-db", "pdns_server", "pdns_control")
	zones := []string{"nsec.example.", "nsec3.example."}
	p := harness.StartPrimaryWith(t, harness.PrimaryOptions{
		Zones: map[string]string{
			zones[0]: signedZoneText(zones[0], 1, false),
			zones[1]: signedZoneText(zones[1], 1, false),
		},
		ExtraConfig: harness.SignedPolicies,
		ZoneOptions: map[string]string{
			zones[0]: harness.SignedZoneOptions("nsec"),
			zones[1]: harness.SignedZoneOptions("nsec3"),
		},
	})
	serials := map[string]uint32{}
	anchors := map[string]string{}
	for _, z := range zones {
		serials[z] = p.WaitSigned(t, z, 0)
		anchors[z] = p.TrustAnchor(t, z)
	}
	jsonLogs := map[string]string{"log_format": "json"}

	var backends []*signedBackend
	// file: a named loading the agent's files as they are.
	{
		n := harness.StartBackendNamed(t, harness.BackendOptions{})
		a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", Service: jsonLogs})
		backends = append(backends, &signedBackend{name: "file", a: a, server: n.Addr(), loaded: func(z string) error {
			// check-integrity no, as the bind9 backend adds zones; no dnssec-policy: named
			// serves the records as they are.
			conf := fmt.Sprintf(`{ type primary; file "%s"; check-integrity no; };`, a.ZoneFile(z))
			if _, err := n.Rndc("showzone", strings.TrimSuffix(z, ".")); err == nil {
				out, err := n.Rndc("reload", strings.TrimSuffix(z, "."))
				return wrapOut(err, out)
			}
			out, err := n.Rndc("addzone", strings.TrimSuffix(z, "."), conf)
			return wrapOut(err, out)
		}})
	}
	for _, mode := range []string{"reload", "update"} {
		n := harness.StartBackendNamed(t, harness.BackendOptions{})
		cfg := bind9AgentConfig(p, n, mode)
		cfg.Service = jsonLogs
		backends = append(backends, &signedBackend{name: "bind9-" + mode, a: harness.StartAgent(t, cfg), server: n.Addr(), named: n})
	}
	{
		e := startPDNSEnv(t, harness.PDNSOptions{})
		cfg := pdnsAgentConfig(e)
		cfg.Masters, cfg.AllowNotify, cfg.Service = p.Addr(), "127.0.0.1", jsonLogs
		backends = append(backends, &signedBackend{name: "powerdns", a: harness.StartAgent(t, cfg), server: e.p.Addr()})
	}

	t.Run("create", func(t *testing.T) {
		for _, b := range backends {
			t.Run(b.name, func(t *testing.T) {
				t.Parallel()
				for i, z := range zones {
					req := harness.CreateMsg(uint16(0x1800+i), z)
					expectBytes(t, "CREATE "+z, udp(t, b.a.Addr(), req, 25*time.Second), harness.Reply(req, 0xf400))
					if b.loaded != nil {
						if err := b.loaded(z); err != nil {
							t.Fatalf("loading %s: %v", z, err)
						}
					}
					checkSigned(t, b, p, z, serials[z], anchors[z], signedQueriesCreate)
				}
			})
		}
	})
	if t.Failed() {
		return
	}

	// The change: named signs the new version, and the agents fetch it by IXFR.
	for _, z := range zones {
		p.ReloadZone(t, z, signedZoneText(z, 2, true))
	}
	for _, z := range zones {
		serials[z] = p.WaitSigned(t, z, serials[z])
	}
	t.Run("ixfr", func(t *testing.T) {
		for _, b := range backends {
			t.Run(b.name, func(t *testing.T) {
				t.Parallel()
				if b.named != nil {
					// named refuses UPDATEs of RRSIG and NSEC records in a signed zone: the
					// change goes to the file without trying.
					mark := len(b.named.Output())
					defer func() {
						if clients := updateClients(b.named.Output()[mark:]); len(clients) != 0 {
							t.Errorf("named got %d UPDATEs for signed changes, want none:\n%s", len(clients), b.named.Output()[mark:])
						}
					}()
				}
				for i, z := range zones {
					req := harness.NotifyMsg(uint16(0x1810+i), z, false)
					expectBytes(t, "NOTIFY "+z, udp(t, b.a.Addr(), req, 3*time.Second), harness.Reply(req, 0xa400))
					l, ok := xfrTransferTo(b.a, z, serials[z])
					if !ok {
						t.Fatalf("%s: no transfer to serial %d:\n%s", z, serials[z], b.a.Output())
					}
					if l.Type != "IXFR" {
						t.Errorf("%s: the change came as %s, want IXFR", z, l.Type)
					}
					if b.loaded != nil {
						if err := b.loaded(z); err != nil {
							t.Fatalf("reloading %s: %v", z, err)
						}
					}
					checkSigned(t, b, p, z, serials[z], anchors[z], signedQueriesChanged)
				}
			})
		}
	})
}

func wrapOut(err error, out string) error {
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// checkSigned waits until the backend's server serves serial, then asks it and the
// primary every query: the answers (rcode, answer and authority sections, DNSSEC records
// included) must be the same, and delv must validate the backend's answer.
func checkSigned(t *testing.T, b *signedBackend, p *harness.Primary, zone string, serial uint32, anchor string, queries []signedQuery) {
	t.Helper()
	var got uint32
	if !harness.Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		got, _ = harness.QuerySerial(b.server, zone)
		return got == serial
	}) {
		t.Fatalf("%s: %s serves serial %d, want %d\nagent output:\n%s", zone, b.name, got, serial, b.a.Output())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for _, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := zone
			if q.name != "@" {
				name = q.name + "." + zone
			}
			if err := compareSigned(b.server, p.Addr(), name, q.qtype); err != "" {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			if err := delvValidates(b.server, anchor, zone, name, q.qtype, q.want); err != "" {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(errs)
	for _, e := range errs {
		t.Errorf("%s: %s", b.name, e)
	}
}

// compareSigned asks both servers (DO set, over TCP) and describes how the answers differ.
func compareSigned(server, primary, name, qtype string) string {
	ask := func(addr string) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.StringToType[qtype])
		m.RecursionDesired = false
		m.SetEdns0(4096, true)
		return harness.Exchange("tcp", addr, m, 3*time.Second)
	}
	want, err := ask(primary)
	if err != nil {
		return fmt.Sprintf("%s %s at the primary: %v", name, qtype, err)
	}
	got, err := ask(server)
	if err != nil {
		return fmt.Sprintf("%s %s: %v", name, qtype, err)
	}
	// BIND adds the apex NS RRset (and its RRSIG) to the authority section of a positive
	// answer (minimal-responses no), PowerDNS does not: a server's choice, not zone data.
	section := func(rrs []dns.RR, positive bool) []string {
		out := make([]string, 0, len(rrs))
		for _, rr := range rrs {
			sig, isSig := rr.(*dns.RRSIG)
			if positive && (rr.Header().Rrtype == dns.TypeNS || isSig && sig.TypeCovered == dns.TypeNS) {
				continue
			}
			out = append(out, strings.ToLower(rr.String()))
		}
		sort.Strings(out)
		return out
	}
	if got.Rcode != want.Rcode || !got.Authoritative {
		return fmt.Sprintf("%s %s: rcode %s aa=%v, the primary says %s", name, qtype,
			dns.RcodeToString[got.Rcode], got.Authoritative, dns.RcodeToString[want.Rcode])
	}
	for _, s := range []struct {
		what      string
		got, want []dns.RR
		positive  bool
	}{{"answer", got.Answer, want.Answer, false}, {"authority", got.Ns, want.Ns, len(want.Answer) > 0}} {
		g, w := section(s.got, s.positive), section(s.want, s.positive)
		if strings.Join(g, "\n") != strings.Join(w, "\n") {
			return fmt.Sprintf("%s %s: %s section\n  got:\n    %s\n  the primary's:\n    %s", name, qtype, s.what,
				strings.Join(g, "\n    "), strings.Join(w, "\n    "))
		}
	}
	return ""
}

// delvValidates runs delv against server with the zone's key as the only trust anchor.
func delvValidates(server, anchor, zone, name, qtype, want string) string {
	host, port, _ := strings.Cut(server, ":")
	text, err := harness.RunTool(30*time.Second, harness.LookPath("delv"), "-a", anchor, "+root="+zone, "@"+host, "-p", port,
		"+tcp", name, qtype)
	ok := false
	switch want {
	case "validated":
		ok = strings.Contains(text, "; fully validated")
	case "nxdomain":
		ok = strings.Contains(text, "; negative response, fully validated") && strings.Contains(text, "ncache nxdomain")
	case "nodata":
		ok = strings.Contains(text, "; negative response, fully validated") && strings.Contains(text, "ncache nxrrset")
	}
	if !ok {
		return fmt.Sprintf("delv %s %s: want %s (%v):\n%s", name, qtype, want, err, text)
	}
	return ""
}

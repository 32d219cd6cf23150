package tests

// End-to-end tests of tracker issue 7 (security): inbound TSIG as RFC 8945 and SPEC §8
// say, checked with real clients (dig -y, kdig -y) as well as miekg/dns; key rotation;
// and acceptance 5: no write outside zone_file_path, no command run with attacker text,
// no query forwarded for a refused source. Tests are named TestSecurityAT<n>.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/tests/harness"
	"github.com/miekg/dns"
)

// tsigKey is a key as the agent's [tsig:NAME] section and the clients know it.
type tsigKey struct {
	name      string // as configured, without the trailing dot
	algorithm string // BIND's name, as dig -y and the agent's config take it
	secret    string // base64
}

func (k tsigKey) fqdn() string { return dns.Fqdn(k.name) }

// miekgAlgorithm is the algorithm as miekg/dns names it.
func (k tsigKey) miekgAlgorithm() string { return dns.Fqdn(k.algorithm) }

func (k tsigKey) section() string {
	return fmt.Sprintf("[tsig:%s]\nalgorithm = %s\nsecret = %s\n", k.name, k.algorithm, k.secret)
}

// The controller's key and the one being rolled in: both accepted during a rotation.
var (
	designateKey = tsigKey{"designate", "hmac-sha256", "SUEtdGhlLWRlc2lnbmF0ZS13b3JrZXJzLWtleS0wMDE="}
	nextKey      = tsigKey{"designate-next", "hmac-sha512", "dGhlLWtleS1iZWluZy1yb2xsZWQtaW4tZm9yLXJvdGF0aW9uLTAwMg=="}
	strangerKey  = tsigKey{"stranger", "hmac-sha256", "bm90LWEta2V5LXRoZS1hZ2VudC1rbm93cy1hdC1hbGwtMDM="}
)

// tsigEnv is a primary and an agent that requires TSIG for commands and accepts both keys.
func tsigEnv(t *testing.T) *env {
	t.Helper()
	return setup(t, envOpts{records: 60, allowLocal: true, agent: harness.AgentConfig{
		Service:  map[string]string{"tsig_keys": designateKey.name + ", " + nextKey.name, "require_tsig": "command"},
		Sections: designateKey.section() + nextKey.section(),
	}})
}

// signedExchange signs m with key (at time signed at; 0: now), sends it over network and
// returns the reply, its bytes and the request's MAC (to verify the reply with).
func signedExchange(t *testing.T, network, addr string, m *dns.Msg, key tsigKey, at int64) (*dns.Msg, []byte, string) {
	t.Helper()
	if at == 0 {
		at = time.Now().Unix()
	}
	m.SetTsig(key.fqdn(), key.miekgAlgorithm(), 300, at)
	req, mac, err := dns.TsigGenerate(m, key.secret, "", false)
	if err != nil {
		t.Fatalf("signing with %s: %v", key.name, err)
	}
	var raw []byte
	if network == "tcp" {
		raw, err = harness.ExchangeTCP(addr, req, 25*time.Second)
	} else {
		raw, err = harness.ExchangeUDP(addr, req, 25*time.Second)
	}
	if err != nil {
		t.Fatalf("%s exchange signed with %s: %v", network, key.name, err)
	}
	return unpack(t, "signed request", raw), raw, mac
}

// ccMsg is Designate's CREATE (or DELETE) as a miekg message: flags 0x7400, no EDNS.
func ccMsg(id uint16, name string, qtype uint16) *dns.Msg {
	return &dns.Msg{MsgHdr: dns.MsgHdr{Id: id, Opcode: request.OpcodeCC, Authoritative: true},
		Question: []dns.Question{{Name: name, Qtype: qtype, Qclass: request.ClassCC}}}
}

// expectTSIGError checks a NOTAUTH reply carrying TSIG error code, unsigned for BADKEY and
// BADSIG (RFC 8945 §5.3.2), with the question echoed.
func expectTSIGError(t *testing.T, what string, r *dns.Msg, code uint16) *dns.TSIG {
	t.Helper()
	ts := r.IsTsig()
	if r.Rcode != dns.RcodeNotAuth || ts == nil || ts.Error != code {
		got := "no TSIG"
		if ts != nil {
			got = "TSIG error " + dns.RcodeToString[int(ts.Error)]
		}
		t.Errorf("%s: rcode %s, %s; want NOTAUTH with TSIG error %s", what, dns.RcodeToString[r.Rcode], got, dns.RcodeToString[int(code)])
		return ts
	}
	if code != dns.RcodeBadTime && ts.MAC != "" {
		t.Errorf("%s: the %s reply is signed (MAC %s); RFC 8945 §5.3.2 says it must not be", what, dns.RcodeToString[int(code)], ts.MAC)
	}
	if r.Authoritative || !r.Response || len(r.Question) != 1 {
		t.Errorf("%s: reply header/question %v", what, r)
	}
	return ts
}

// verifyErrorReply checks the MAC of a signed NOTAUTH reply (BADTIME). miekg/dns's
// TsigVerify refuses every NOTAUTH message, so the MAC is computed again here: the reply
// without its TSIG, signed with the same TSIG variables, must give the same MAC.
func verifyErrorReply(r *dns.Msg, key tsigKey, requestMAC string) error {
	ts := r.IsTsig()
	if ts == nil || ts.MAC == "" {
		return fmt.Errorf("no MAC")
	}
	c := r.Copy()
	again := *ts
	again.MAC, again.MACSize = "", 0
	c.Extra[len(c.Extra)-1] = &again
	_, mac, err := dns.TsigGenerate(c, key.secret, requestMAC, false)
	if err != nil {
		return err
	}
	if !strings.EqualFold(mac, ts.MAC) {
		return fmt.Errorf("MAC %s, computed with the key %s", ts.MAC, mac)
	}
	return nil
}

// noTransfer checks that the primary was never asked for the zone.
func noTransfer(t *testing.T, p *harness.Primary, what string) {
	t.Helper()
	if out := p.Output(); strings.Contains(out, "XFR started") {
		t.Errorf("%s: the primary served a transfer:\n%s", what, regexp.MustCompile(`(?m)^.*XFR started.*$`).FindString(out))
	}
}

// runTool runs a client tool, bounded in time, and returns its output.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.LookPath(name), args...).CombinedOutput()
	if err != nil && ctx.Err() != nil {
		t.Fatalf("%s %v timed out:\n%s", name, args, out)
	}
	return string(out)
}

// digCC sends a Designate command with dig (+opcode=14), signed with key.
func digCC(t *testing.T, a *harness.Agent, key tsigKey, qtype string, tcp bool) string {
	t.Helper()
	host, port := splitAddr(t, a.Addr())
	args := []string{"@" + host, "-p", port, "+opcode=14", "+norecurse", "+noedns", "+tries=1", "+time=25",
		"-y", key.algorithm + ":" + key.name + ":" + key.secret, zone, qtype, "CLASS65280"}
	if tcp {
		args = append(args, "+tcp")
	}
	return runTool(t, "dig", args...)
}

var (
	digHeader = regexp.MustCompile(`->>HEADER<<- opcode: (\S+), status: (\S+), id: \d+`)
	digFlags  = regexp.MustCompile(`(?m)^;; flags: ([a-z ]*);`)
)

// expectDigSuccess parses dig's output: NOERROR, qr and aa set, a TSIG pseudosection with
// the key and no error, and no complaint about the signature.
func expectDigSuccess(t *testing.T, what, out string, key tsigKey) {
	t.Helper()
	h := digHeader.FindStringSubmatch(out)
	f := digFlags.FindStringSubmatch(out)
	switch {
	case h == nil || f == nil:
		t.Errorf("%s: cannot parse dig's output:\n%s", what, out)
	case h[2] != "NOERROR" || !strings.Contains(" "+f[1]+" ", " qr ") || !strings.Contains(" "+f[1]+" ", " aa "):
		t.Errorf("%s: status %s flags %q, want NOERROR with qr aa:\n%s", what, h[2], f[1], out)
	case strings.Contains(out, "Couldn't verify signature") || strings.Contains(out, "tsig verify failure") ||
		strings.Contains(strings.ToLower(out), "expected a tsig"):
		t.Errorf("%s: dig could not verify the reply with %s:\n%s", what, key.name, out)
	case !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key.fqdn()) + `\s+0\s+ANY\s+TSIG\s+` + regexp.QuoteMeta(key.algorithm) + `\.\s.*NOERROR`).MatchString(out):
		t.Errorf("%s: no TSIG from %s with NOERROR in dig's output:\n%s", what, key.name, out)
	}
}

func splitAddr(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("address %q without a port", addr)
	}
	return addr[:i], addr[i+1:]
}

// Acceptance 1: with require_tsig = command, an unsigned CREATE is REFUSED and changes
// nothing; signed with an unknown key it gets NOTAUTH/BADKEY, with a wrong secret
// NOTAUTH/BADSIG, signed an hour ago NOTAUTH/BADTIME (signed, with our clock, the offset
// logged); signed with the right key it succeeds and the reply verifies with that key,
// for dig as for miekg/dns. Unsigned NOTIFY (Designate's) still works.
func TestSecurityAT1RequireTSIGForCommands(t *testing.T) {
	t.Parallel()
	harness.Require(t, "dig")
	e := tsigEnv(t)
	a, p := e.a, e.p

	for i, network := range []string{"udp", "tcp"} {
		req := harness.CreateMsg(0x7101+uint16(i), zone)
		var r []byte
		if network == "udp" {
			r = udp(t, a.Addr(), req, 25*time.Second)
		} else {
			r = tcp(t, a.Addr(), req, 25*time.Second)
		}
		expectBytes(t, "unsigned CREATE over "+network, r, harness.Reply(req, 0xf005))
		del := harness.DeleteMsg(0x7111+uint16(i), zone)
		expectBytes(t, "unsigned DELETE over "+network, udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf005))
	}

	r, _, _ := signedExchange(t, "udp", a.Addr(), ccMsg(0x7121, zone, request.TypeCreate), strangerKey, 0)
	expectTSIGError(t, "CREATE signed with an unknown key", r, dns.RcodeBadKey)
	wrong := tsigKey{designateKey.name, designateKey.algorithm, strangerKey.secret}
	r, _, _ = signedExchange(t, "tcp", a.Addr(), ccMsg(0x7122, zone, request.TypeCreate), wrong, 0)
	expectTSIGError(t, "CREATE signed with a wrong secret", r, dns.RcodeBadSig)
	// A known name with another algorithm is another key (RFC 8945 §5.2.2): BADKEY.
	otherAlg := tsigKey{designateKey.name, "hmac-sha512", designateKey.secret}
	r, _, _ = signedExchange(t, "udp", a.Addr(), ccMsg(0x7123, zone, request.TypeCreate), otherAlg, 0)
	expectTSIGError(t, "CREATE signed with the key's name but another algorithm", r, dns.RcodeBadKey)

	mark := len(a.Output())
	signedAt := time.Now().Add(-time.Hour).Unix()
	r, _, mac := signedExchange(t, "udp", a.Addr(), ccMsg(0x7124, zone, request.TypeCreate), designateKey, signedAt)
	if ts := expectTSIGError(t, "CREATE signed an hour ago", r, dns.RcodeBadTime); ts != nil {
		if err := verifyErrorReply(r, designateKey, mac); err != nil {
			t.Errorf("the BADTIME reply is not signed with %s: %v", designateKey.name, err)
		}
		if other, err := hex.DecodeString(ts.OtherData); err != nil || len(other) != 6 {
			t.Errorf("BADTIME other data %q: want the server's 48-bit time", ts.OtherData)
		} else if server := int64(binary.BigEndian.Uint64(append([]byte{0, 0}, other...))); server < time.Now().Unix()-10 || server > time.Now().Unix()+10 {
			t.Errorf("BADTIME other data says the server's time is %d, now is %d", server, time.Now().Unix())
		}
	}
	if !agentLogged(a, mark, "BADTIME") || !regexp.MustCompile(`-1h0m\d*s`).MatchString(a.Output()[mark:]) {
		t.Errorf("the BADTIME refusal is not logged with the clock offset (-1h0m...):\n%s", a.Output()[mark:])
	}

	if n := dirEntries(t, a.Dir()); len(n) != 0 {
		t.Errorf("refused commands wrote %v", n)
	}
	noTransfer(t, p, "refused commands")

	// The right key, miekg/dns client: NOERROR+AA, signed with that key.
	r, raw, mac := signedExchange(t, "udp", a.Addr(), ccMsg(0x7131, zone, request.TypeCreate), designateKey, 0)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.Opcode != request.OpcodeCC {
		t.Fatalf("CREATE signed with %s: %v", designateKey.name, r)
	}
	if err := dns.TsigVerify(raw, designateKey.secret, mac, false); err != nil || r.IsTsig() == nil || r.IsTsig().Hdr.Name != designateKey.fqdn() {
		t.Errorf("the CREATE reply does not verify with %s: %v (%v)", designateKey.name, err, r.IsTsig())
	}
	if d := diffFile(a, primarySet(t, p)); d != "" {
		t.Errorf("after the signed CREATE: %s", d)
	}

	// dig -y: DELETE over TCP, CREATE over UDP, each verified by dig itself.
	expectDigSuccess(t, "dig DELETE signed with "+designateKey.name, digCC(t, a, designateKey, "TYPE65283", true), designateKey)
	if _, err := os.Stat(a.ZoneFile(zone)); !os.IsNotExist(err) {
		t.Errorf("after dig's signed DELETE the zone file is still there (%v)", err)
	}
	expectDigSuccess(t, "dig CREATE signed with "+designateKey.name, digCC(t, a, designateKey, "TYPE65282", false), designateKey)
	if d := diffFile(a, primarySet(t, p)); d != "" {
		t.Errorf("after dig's signed CREATE: %s", d)
	}
	// dig with an unknown key: dig reports NOTAUTH and the BADKEY error.
	out := digCC(t, a, strangerKey, "TYPE65283", false)
	if h := digHeader.FindStringSubmatch(out); h == nil || h[2] != "NOTAUTH" || !strings.Contains(out, "BADKEY") {
		t.Errorf("dig DELETE signed with an unknown key: want NOTAUTH and BADKEY:\n%s", out)
	}
	if _, err := os.Stat(a.ZoneFile(zone)); err != nil {
		t.Errorf("a DELETE signed with an unknown key removed the zone: %v", err)
	}

	// Key names compare as domain names, case-insensitively (RFC 8945 §4.2): a worker that
	// writes the name in capitals signs with the same key, and its replies verify.
	upper := tsigKey{strings.ToUpper(designateKey.name), designateKey.algorithm, designateKey.secret}
	for i, cc := range []uint16{request.TypeDelete, request.TypeCreate} {
		what := []string{"DELETE", "CREATE"}[i] + " signed with " + upper.fqdn()
		r, raw, mac := signedExchange(t, []string{"tcp", "udp"}[i], a.Addr(), ccMsg(0x7133+uint16(i), zone, cc), upper, 0)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			t.Errorf("%s: %v", what, r)
		} else if err := dns.TsigVerify(raw, upper.secret, mac, false); err != nil {
			t.Errorf("the reply to the %s does not verify: %v", what, err)
		}
		if _, err := os.Stat(a.ZoneFile(zone)); (cc == request.TypeDelete) != os.IsNotExist(err) {
			t.Errorf("after the %s: zone file %v", what, err)
		}
	}

	// require_tsig = command leaves NOTIFY open, as Designate's worker sends it unsigned;
	// a signed NOTIFY is answered signed.
	notify(t, a, 0x7141)
	n := new(dns.Msg).SetNotify(zone)
	n.Id = 0x7142
	r, raw, mac = signedExchange(t, "udp", a.Addr(), n, nextKey, 0)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Errorf("NOTIFY signed with %s: %v", nextKey.name, r)
	} else if err := dns.TsigVerify(raw, nextKey.secret, mac, false); err != nil {
		t.Errorf("the NOTIFY reply does not verify with %s: %v", nextKey.name, err)
	}
	a.CheckAlive(t)
}

// Key rotation with overlap: during the rotation both keys are accepted (each reply is
// signed with the key of its request, also via dig); once the old key is dropped from
// tsig_keys it gets BADKEY and the new one still works.
func TestSecurityKeyRotation(t *testing.T) {
	t.Parallel()
	harness.Require(t, "dig")
	e := tsigEnv(t)
	a := e.a

	r, raw, mac := signedExchange(t, "tcp", a.Addr(), ccMsg(0x7201, zone, request.TypeCreate), nextKey, 0)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Fatalf("CREATE signed with the new key %s: %v", nextKey.name, r)
	}
	if err := dns.TsigVerify(raw, nextKey.secret, mac, false); err != nil {
		t.Errorf("reply to the new key's request does not verify with it: %v", err)
	}
	r, raw, mac = signedExchange(t, "udp", a.Addr(), ccMsg(0x7202, zone, request.TypeDelete), designateKey, 0)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Fatalf("DELETE signed with the old key %s: %v", designateKey.name, r)
	}
	if err := dns.TsigVerify(raw, designateKey.secret, mac, false); err != nil {
		t.Errorf("reply to the old key's request does not verify with it: %v", err)
	}
	expectDigSuccess(t, "dig CREATE with the new key (hmac-sha512)", digCC(t, a, nextKey, "TYPE65282", false), nextKey)
	if d := diffFile(a, primarySet(t, e.p)); d != "" {
		t.Errorf("after the CREATE with the new key: %s", d)
	}

	// The rotation ends: the old key leaves tsig_keys; the agent restarts with the new one.
	cfg := a.Config
	cfg.Service = map[string]string{"tsig_keys": nextKey.name, "require_tsig": "command"}
	cfg.Sections = nextKey.section()
	harness.StopAgent(a)
	b := harness.StartAgent(t, cfg)
	r, _, _ = signedExchange(t, "udp", b.Addr(), ccMsg(0x7203, zone, request.TypeDelete), designateKey, 0)
	expectTSIGError(t, "DELETE signed with the retired key", r, dns.RcodeBadKey)
	if _, err := os.Stat(b.ZoneFile(zone)); err != nil {
		t.Errorf("a DELETE signed with the retired key removed the zone: %v", err)
	}
	expectDigSuccess(t, "dig DELETE with the new key after the rotation", digCC(t, b, nextKey, "TYPE65283", false), nextKey)
	b.CheckAlive(t)
}

// Signed queries are relayed to query_destination and the answer comes back signed with
// the client's key, as dig -y (and kdig -y, when installed) verify. The agent checked the
// signature itself; the destination does not know the client's keys, so the TSIG record
// must not go along.
func TestSecuritySignedQueryPassthrough(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc", "dig", "kdig")
	p := harness.StartPrimary(t, map[string]string{zone: harness.NewZone(zone, 2024070601, 20).Text()})
	a := harness.StartAgent(t, harness.AgentConfig{
		Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: p.Addr(),
		Service:  map[string]string{"tsig_keys": designateKey.name, "require_tsig": "query"},
		Sections: designateKey.section(),
	})
	host, port := splitAddr(t, a.Addr())
	key := [2]string{"-y", designateKey.algorithm + ":" + designateKey.name + ":" + designateKey.secret}
	soa := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(zone) + `\s+\d+\s+IN\s+SOA\s`)
	for _, transport := range []string{"udp", "tcp"} {
		args := []string{"@" + host, "-p", port, "+norecurse", "+tries=1", "+time=5", key[0], key[1], zone, "SOA"}
		if transport == "tcp" {
			args = append(args, "+tcp")
		}
		out := runTool(t, "dig", args...)
		if h := digHeader.FindStringSubmatch(out); h == nil || h[2] != "NOERROR" || !soa.MatchString(out) {
			t.Errorf("dig -y %s SOA query via the agent: want NOERROR and the SOA:\n%s", transport, out)
		} else if strings.Contains(out, "Couldn't verify") || strings.Contains(out, "failure") ||
			!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(designateKey.fqdn())+`\s+0\s+ANY\s+TSIG\s.*NOERROR`).MatchString(out) {
			t.Errorf("dig -y %s: the relayed answer is not signed with %s as dig expects:\n%s", transport, designateKey.name, out)
		}
		flag := map[string]string{"udp": "+notcp", "tcp": "+tcp"}[transport]
		out = runTool(t, "kdig", "@"+host, "-p", port, flag, "+norecurse", "+timeout=5", "+retry=0", key[0], key[1], zone, "SOA")
		if !strings.Contains(out, "status: NOERROR") || !soa.MatchString(out) ||
			strings.Contains(strings.ToLower(out), "warning") || strings.Contains(out, "failed") {
			t.Errorf("kdig -y %s SOA query via the agent: want NOERROR, the SOA and a verified TSIG:\n%s", transport, out)
		}
	}
	// Unsigned queries are refused: require_tsig = query.
	req := harness.QueryMsg(0x7301, zone, dns.TypeSOA, false)
	expectBytes(t, "unsigned query with require_tsig = query", udp(t, a.Addr(), req, 3*time.Second), harness.Reply(req, 0x8005))
	a.CheckAlive(t)
}

// hostileNames are zone names an attacker can put in a question: path separators and
// traversal, quotes and braces (named.conf and rndc syntax), shell syntax, whitespace,
// control bytes, a zone-file directive, a wildcard. In presentation format, escapes as
// miekg/dns reads them.
var hostileNames = []string{
	`\.\.`,
	`\.\./\.\./\.\./tmp/pwned`,
	`\.\.\/\.\.\/etc\/passwd`,
	`x.\.\..example`,
	`a\/b.example`,
	`evil".example`,
	`a{b}.example`,
	`x\;\ type\ primary\;\ file\ "\/etc\/passwd"\;.example`,
	`$\(touch\ pwned\).example`,
	"`id`.example",
	`a\ b.example`,
	`a\010b.example`,
	`a\000b.example`,
	`\$INCLUDE.example`,
	`*.example`,
	`a\\b.example`,
	`{zone}.example`,
}

// Acceptance 5 (files and commands): hostile names over the wire, in CREATE, DELETE and
// NOTIFY, over UDP and TCP, never make the agent write outside zone_file_path, never
// reach the reload or delete command, never reach the primary; and a primary's records
// with hostile owner names and text are written so that they read back as exactly those
// records (no directive, no extra line), with the commands getting only the zone name
// and the file path, each as one argument.
func TestSecurityAT5NoWriteOutsideNoAttackerCommand(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc", "named-checkzone")
	root := t.TempDir()
	zoneDir := filepath.Join(root, "a", "b", "zones")
	if err := os.MkdirAll(zoneDir, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(root, "commands.log")
	script := filepath.Join(root, "record-args.sh")
	// One line per run: the kind, then each argument between brackets.
	body := "#!/bin/sh\nkind=$1; shift\nline=\"$kind\"\nfor a in \"$@\"; do line=\"$line [$a]\"; done\nprintf '%s\\n' \"$line\" >> " + log + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}

	z := harness.NewZone(zone, 2024070701, 30)
	z.Extra = []string{
		`\$INCLUDE.example.com. 300 IN A 192.0.2.66`,
		`a\;b.example.com. 300 IN TXT "x"`,
		`a\032b.example.com. 300 IN A 192.0.2.67`,
		`a\"b\{c\}.example.com. 300 IN A 192.0.2.68`,
		`inject.example.com. 300 IN TXT "line\010$INCLUDE /etc/passwd" "\"; reload \"" "back\\slash"`,
		`dots\.and\/slashes.example.com. 300 IN A 192.0.2.69`,
	}
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	a := harness.StartAgent(t, harness.AgentConfig{
		Masters: p.Addr(), AllowNotify: "127.0.0.1", ZoneFilePath: zoneDir,
		Backend: map[string]string{
			"reload_command": script + " reload {zone} {file}",
			"delete_command": script + " delete {zone} {file}",
		},
	})
	outside := func() []string {
		var found []string
		filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err == nil && path != root && !strings.HasPrefix(path, zoneDir+string(os.PathSeparator)) && path != zoneDir &&
				path != log && path != script && !strings.HasPrefix(zoneDir, path) {
				found = append(found, path)
			}
			return nil
		})
		return found
	}

	id := uint16(0x7500)
	for _, name := range hostileNames {
		fq := dns.Fqdn(name)
		if _, ok := dns.IsDomainName(fq); !ok {
			t.Fatalf("test bug: %q is not a domain name miekg/dns can send", fq)
		}
		for _, network := range []string{"udp", "tcp"} {
			for _, m := range []*dns.Msg{ccMsg(id, fq, request.TypeCreate), ccMsg(id+1, fq, request.TypeDelete), notifyMsg(id+2, fq)} {
				id += 3
				r, err := harness.Exchange(network, a.Addr(), m, 25*time.Second)
				if err != nil {
					t.Errorf("%s %s for %q: %v", network, dns.OpcodeToString[m.Opcode], name, err)
					continue
				}
				if r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeRefused {
					t.Errorf("%s %s for %q: rcode %s, want FORMERR or REFUSED", network, dns.OpcodeToString[m.Opcode], name, dns.RcodeToString[r.Rcode])
				}
			}
		}
	}
	a.CheckAlive(t)
	if n := dirEntries(t, zoneDir); len(n) != 0 {
		t.Errorf("hostile names wrote %v in zone_file_path", n)
	}
	if found := outside(); len(found) > 0 {
		t.Errorf("files appeared outside zone_file_path: %v", found)
	}
	if _, err := os.Stat(log); !os.IsNotExist(err) {
		b, _ := os.ReadFile(log)
		t.Errorf("a command ran for a hostile name:\n%s", b)
	}
	if n := dirEntries(t, filepath.Dir(a.Path)); len(n) != 1 {
		t.Errorf("the agent's working directory holds %v, want only its configuration", n)
	}
	noTransfer(t, p, "hostile names")

	// The real zone, with hostile records: the commands get exactly the zone name and
	// the file, and the file reads back as the primary's records.
	create(t, a, 0x7601)
	served := p.AXFR(t, zone)
	written, err := harness.ParseZoneFile(a.ZoneFile(zone), bogusOrigin)
	if err != nil {
		t.Fatalf("the zone with hostile records: %v", err)
	}
	if d := harness.DiffSets(wireSet(t, served[:len(served)-1]), wireSet(t, written), 8); d != "" {
		t.Errorf("the zone with hostile records does not read back as the primary's: %s", d)
	}
	// No record may start a line that reads as a directive, and the DNS server must load it.
	data, _ := os.ReadFile(a.ZoneFile(zone))
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "$") {
			t.Errorf("the zone file has a line starting with '$', which BIND and ldns read as a directive: %q", line)
		}
	}
	if out := runTool(t, "named-checkzone", "-k", "ignore", "-i", "none", strings.TrimSuffix(zone, "."), a.ZoneFile(zone)); !strings.Contains(out, "OK") {
		t.Errorf("named-checkzone refuses the file the agent wrote:\n%s", out)
	}
	del := harness.DeleteMsg(0x7602, zone)
	expectBytes(t, "DELETE", udp(t, a.Addr(), del, 25*time.Second), harness.Reply(del, 0xf400))
	got, _ := os.ReadFile(log)
	path := a.ZoneFile(zone)
	want := fmt.Sprintf("reload [example.com] [%s]\ndelete [example.com] [%s]\n", path, path)
	if string(got) != want {
		t.Errorf("the commands ran with\n%s\nwant\n%s", got, want)
	}
	if found := outside(); len(found) > 0 {
		t.Errorf("files appeared outside zone_file_path: %v", found)
	}
	a.CheckAlive(t)
}

// wireSet canonicalises records by their wire form: `\$x` and `$x` are one name, though
// miekg/dns keeps the escapes a zone file used in the names it parsed.
func wireSet(t *testing.T, rrs []dns.RR) []string {
	t.Helper()
	out := make([]dns.RR, 0, len(rrs))
	buf := make([]byte, 65535)
	for _, rr := range rrs {
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("pack %v: %v", rr, err)
		}
		back, _, err := dns.UnpackRR(buf[:n], 0)
		if err != nil {
			t.Fatalf("unpack %v: %v", rr, err)
		}
		out = append(out, back)
	}
	return harness.Canonical(out)
}

func notifyMsg(id uint16, name string) *dns.Msg {
	m := new(dns.Msg).SetNotify(name)
	m.Id = id
	return m
}

// Acceptance 5 (queries): a source outside allow_query gets REFUSED and nothing reaches
// query_destination, over UDP and TCP, for ordinary queries, transfers, EDNS and signed
// queries; an allowed source is relayed (so the counting can see a relay at all).
func TestSecurityAT5NoForwardForRefusedSource(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "rndc")
	z := harness.NewZone(zone, 2024070801, 10)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	dest := harness.StartProxy(t, p.Addr()) // counts what reaches the destination
	a := harness.StartAgent(t, harness.AgentConfig{
		Masters: p.Addr(), AllowNotify: "127.0.0.1", QueryDestination: dest.Addr(),
		Service:  map[string]string{"tsig_keys": designateKey.name},
		Sections: designateKey.section(),
	})
	base := dest.UDPMessages() + dest.TCPConns() // the harness's readiness probe came from 127.0.0.1
	relayed := func() int64 { return dest.UDPMessages() + dest.TCPConns() - base }

	queries := map[string]*dns.Msg{}
	for _, qt := range []uint16{dns.TypeSOA, dns.TypeA, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeTXT} {
		m := new(dns.Msg).SetQuestion(zone, qt)
		queries[dns.TypeToString[qt]] = m
	}
	e := new(dns.Msg).SetQuestion(zone, dns.TypeDNSKEY)
	e.SetEdns0(4096, true)
	queries["DNSKEY+EDNS"] = e
	for name, q := range queries {
		for _, network := range []string{"udp", "tcp"} {
			q.Id = dns.Id()
			raw, _ := q.Pack()
			var r []byte
			var err error
			if network == "udp" {
				r, err = harness.ExchangeUDPFrom("127.0.0.2", a.Addr(), raw, 3*time.Second)
			} else {
				r, err = harness.ExchangeTCPFrom("127.0.0.2", a.Addr(), raw, 3*time.Second)
			}
			if err != nil {
				t.Errorf("%s %s from 127.0.0.2: %v", network, name, err)
				continue
			}
			if m := unpack(t, name, r); m.Rcode != dns.RcodeRefused || m.Id != q.Id || len(m.Answer) > 0 {
				t.Errorf("%s %s from 127.0.0.2: %v; want REFUSED, no answer", network, name, m)
			}
		}
	}
	// A valid signature does not open the allow list.
	q := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	q.SetTsig(designateKey.fqdn(), designateKey.miekgAlgorithm(), 300, time.Now().Unix())
	signedQ, _, err := dns.TsigGenerate(q, designateKey.secret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := harness.ExchangeUDPFrom("127.0.0.2", a.Addr(), signedQ, 3*time.Second); err != nil {
		t.Errorf("signed query from 127.0.0.2: %v", err)
	} else if m := unpack(t, "signed query", r); m.Rcode != dns.RcodeRefused {
		t.Errorf("signed query from a refused source: %v", m)
	}
	if n := relayed(); n != 0 {
		t.Errorf("%d queries from a refused source reached query_destination", n)
	}
	// The allowed source is relayed: the counter works.
	sameAnswer(t, "udp", a.Addr(), p.Addr(), new(dns.Msg).SetQuestion(zone, dns.TypeSOA))
	if relayed() == 0 {
		t.Errorf("test setup: an allowed query did not go through the counting proxy")
	}
	a.CheckAlive(t)
}

// RFC 8945 §5.2.2: a server that does not know the key answers NOTAUTH/BADKEY, also when
// it has no keys at all (tsig_keys empty, the default): the request is not served as if
// it were verified, and no reply carries a signature nobody made.
func TestSecuritySignedRequestWithoutKeys(t *testing.T) {
	t.Parallel()
	e := setup(t, envOpts{records: 10, allowLocal: true})
	a := e.a
	r, _, _ := signedExchange(t, "udp", a.Addr(), ccMsg(0x7401, zone, request.TypeCreate), designateKey, 0)
	expectTSIGError(t, "CREATE signed, agent without keys", r, dns.RcodeBadKey)
	if n := dirEntries(t, a.Dir()); len(n) != 0 {
		t.Errorf("a CREATE signed with a key the agent does not have wrote %v", n)
	}
	r, _, _ = signedExchange(t, "tcp", a.Addr(), notifyMsg(0x7402, zone), designateKey, 0)
	expectTSIGError(t, "NOTIFY signed, agent without keys", r, dns.RcodeBadKey)
	// Unsigned, as Designate sends them, everything works.
	create(t, a, 0x7403)
	notify(t, a, 0x7404)
	a.CheckAlive(t)
}

package tests

// End-to-end test of issue 16, acceptance 2: the HTTP control API of a running agent,
// called with Go's net/http and with curl, over TLS with client certificates from a CA
// made for the test.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

const (
	controlToken    = "ops-token-0123456789abcdef"
	controlNewToken = "rotated-token-fedcba9876543210"
)

// testCA is a throwaway CA with a server certificate for 127.0.0.1 and a client one.
type testCA struct {
	dir                  string
	pool                 *x509.CertPool
	client               tls.Certificate
	ca, cert, key, ccert string
	ckey                 string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dnsagent test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
		return certPath, keyPath
	}
	c := &testCA{dir: dir, pool: x509.NewCertPool(), ca: filepath.Join(dir, "ca.pem")}
	os.WriteFile(c.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	c.pool.AddCert(caCert)
	c.cert, c.key = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	c.ccert, c.ckey = issue("designate-ops", 3, x509.ExtKeyUsageClientAuth, nil)
	c.client, err = tls.LoadX509KeyPair(c.ccert, c.ckey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// apiClient calls the control API as source (a loopback address) with or without the
// client certificate.
func (c *testCA) apiClient(source string, withCert bool) *http.Client {
	cfg := &tls.Config{RootCAs: c.pool}
	if withCert {
		cfg.Certificates = []tls.Certificate{c.client}
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DialContext: dialer.DialContext}}
}

func call(t *testing.T, c *http.Client, method, url, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, body)
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{"list": v}
	}
	return resp.StatusCode, m
}

func TestControlAPI(t *testing.T) {
	t.Parallel()
	harness.Require(t, "named", "curl")
	ca := newTestCA(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("# name token\nops "+controlToken+"\n"), 0o600)
	z := harness.NewZone(zone, 1, 100)
	p := harness.StartPrimary(t, map[string]string{zone: z.Text()})
	port := harness.FreePort(t)
	a := harness.StartAgent(t, harness.AgentConfig{Masters: p.Addr(), AllowNotify: "127.0.0.1", Service: map[string]string{
		"control_listen": fmt.Sprintf("127.0.0.1:%d", port), "control_tokens_file": tokens,
		"control_allow": "127.0.0.1/32", "control_tls_cert": ca.cert, "control_tls_key": ca.key,
		"control_tls_client_ca": ca.ca, "control_rate_limit": "0"}})
	base := fmt.Sprintf("https://127.0.0.1:%d/v1/zones", port)
	ok := ca.apiClient("127.0.0.1", true)
	calls := 0
	do := func(c *http.Client, method, path, token string, want int) map[string]any {
		t.Helper()
		calls++
		code, body := call(t, c, method, base+path, token)
		if code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, code, body, want)
		}
		return body
	}
	file := a.ZoneFile(zone)
	exists := func() bool { _, err := os.Stat(file); return err == nil }

	// Refusals change nothing: the zone is not created.
	do(ok, "POST", "/"+zone, "", 401)
	do(ok, "POST", "/"+zone, "wrong-token-0123456789", 401)
	do(ca.apiClient("127.0.0.1", false), "POST", "/"+zone, controlToken, 403)
	do(ca.apiClient("127.0.0.2", true), "POST", "/"+zone, controlToken, 403)
	for _, hostile := range []string{"a;rm%20-rf", "%2e%2e%2fetc", "-x.example", "a%22b", strings.Repeat("a", 64) + ".com"} {
		if body := do(ok, "POST", "/"+hostile, controlToken, 400); body["error"] == "" {
			t.Errorf("%s: no reason", hostile)
		}
	}
	if exists() {
		t.Fatal("a refused call created the zone")
	}

	do(ok, "POST", "/"+zone, controlToken, 200)
	if !exists() {
		t.Fatal("POST did not create the zone")
	}
	if list := do(ok, "GET", "", controlToken, 200)["list"].([]any); len(list) != 1 {
		t.Errorf("GET /v1/zones: %v", list)
	}
	// Paged as /zones is, never every zone at once: a bad page is refused by name.
	if list := do(ok, "GET", "?limit=1&state=idle", controlToken, 200)["list"].([]any); len(list) != 1 {
		t.Errorf("GET /v1/zones?limit=1&state=idle: %v", list)
	}
	if e := do(ok, "GET", "?limit=20000", controlToken, 400); !strings.Contains(fmt.Sprint(e["error"]), "limit") {
		t.Errorf("GET /v1/zones?limit=20000: %v, want the limit refused", e)
	}
	do(ok, "GET", "?state=bogus", controlToken, 400)
	if st := do(ok, "GET", "/"+zone, controlToken, 200); st["zone"] != zone {
		t.Errorf("GET /v1/zones/%s: %v", zone, st)
	}
	if v := do(ok, "GET", "/"+zone+"/verify", controlToken, 200); v["equal"] != true {
		t.Errorf("verify: %v", v)
	}
	text, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(text), "10.0.0.0", "192.0.2.99", 1)), 0o644)
	if v := do(ok, "GET", "/"+zone+"/verify", controlToken, 200); v["equal"] != false || v["change"] != 1.0 {
		t.Errorf("verify after a change behind the agent's back: %v", v)
	}
	// Refused resyncs and deletes change nothing.
	do(ok, "POST", "/"+zone+"/resync", "", 401)
	do(ok, "DELETE", "/"+zone, "bad-token-0123456789abc", 401)
	if v := do(ok, "GET", "/"+zone+"/verify", controlToken, 200); v["equal"] != false || !exists() {
		t.Errorf("a refused call changed the zone: %v", v)
	}
	if r := do(ok, "POST", "/"+zone+"/resync", controlToken, 200); r["apply"] != "diff" || r["deleted"] != 1.0 || r["added"] != 1.0 {
		t.Errorf("resync: %v", r)
	}
	if v := do(ok, "GET", "/"+zone+"/verify", controlToken, 200); v["equal"] != true {
		t.Errorf("verify after resync: %v", v)
	}

	// Token rotation: a second token works as soon as the file lists it.
	os.WriteFile(tokens, []byte("ops "+controlToken+"\nnext "+controlNewToken+"\n"), 0o600)
	do(ok, "GET", "/"+zone, controlNewToken, 200)
	// Revoking ops while breaking the file (a token too short): no token works until the
	// file is fixed, the revoked one least of all; nor once the file is gone.
	os.WriteFile(tokens, []byte("next "+controlNewToken+"\nshort abc\n"), 0o600)
	do(ok, "GET", "/"+zone, controlToken, 401)
	do(ok, "GET", "/"+zone, controlNewToken, 401)
	os.Remove(tokens)
	do(ok, "GET", "/"+zone, controlNewToken, 401)
	os.WriteFile(tokens, []byte("ops "+controlToken+"\nnext "+controlNewToken+"\n"), 0o600)
	do(ok, "GET", "/"+zone, controlToken, 200)

	// dnsagent send --http, the same certificates.
	calls++
	code, out := harness.RunAgentCommand(t, 30*time.Second, "send", "verify", zone, "--http", "https://127.0.0.1:"+fmt.Sprint(port),
		"--token-file", tokens, "--cacert", ca.ca, "--cert", ca.ccert, "--key", ca.ckey)
	if code != 0 || !strings.Contains(out, `"equal": true`) {
		t.Errorf("send verify --http: exit %d:\n%s", code, out)
	}

	// curl, the same certificates.
	curl := func(args ...string) string {
		t.Helper()
		calls++
		out, err := exec.Command(harness.LookPath("curl"), append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}",
			"--max-time", "20", "--cacert", ca.ca}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v %s", args, err, out)
		}
		return string(out)
	}
	withCert := []string{"--cert", ca.ccert, "--key", ca.ckey}
	bearer := []string{"-H", "Authorization: Bearer " + controlToken}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(append(withCert, bearer...), base), "200"},
		{append(append(withCert, bearer...), base+"/"+zone+"/verify"), "200"},
		{append(withCert, base), "401"},
		{append(append([]string{}, bearer...), base), "403"},
		{append(append(withCert, bearer...), "-X", "DELETE", base+"/bad..name"), "400"},
		{append(append(withCert, bearer...), "-X", "DELETE", base+"/"+zone), "200"},
	} {
		if got := curl(c.args...); got != c.want {
			t.Errorf("curl %v: %s, want %s", c.args, got, c.want)
		}
	}
	if exists() {
		t.Error("DELETE left the zone file")
	}

	// One audit line per call, naming who, what and the result.
	var audit []map[string]any
	harness.Eventually(2*time.Second, 20*time.Millisecond, func() bool {
		audit = audit[:0]
		for _, line := range strings.Split(a.Output(), "\n") {
			if strings.Contains(line, "control API call") {
				audit = append(audit, map[string]any{"line": line})
			}
		}
		return len(audit) == calls
	})
	if len(audit) != calls {
		t.Errorf("%d audit lines for %d calls", len(audit), calls)
	}
	if out := a.Output(); !strings.Contains(out, `"who": "ops", "method": "DELETE", "path": "/v1/zones/example.com.", "status": 200`) {
		t.Log(out)
		t.Errorf("the audit lines do not name the token")
	}
}

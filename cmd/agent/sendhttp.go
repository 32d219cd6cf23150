package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend"
)

// httpOptions are send's --http flags.
type httpOptions struct {
	url, tokenFile, ca, cert, key string
}

// sendHTTP calls the control API: status (GET), create (POST), delete (DELETE), resync
// (POST .../resync) or verify (GET .../verify), and prints the JSON answer. Exit 0 on
// 2xx (verify: only when the zone matches), 1 otherwise, 3 when the agent did not answer.
func sendHTTP(h httpOptions, kind, zone string, timeout time.Duration, stdout, stderr io.Writer) int {
	zone = backend.CanonicalZone(zone)
	routes := map[string][2]string{
		"status": {"GET", ""}, "create": {"POST", ""}, "delete": {"DELETE", ""},
		"resync": {"POST", "/resync"}, "verify": {"GET", "/verify"},
	}
	route, ok := routes[kind]
	if !ok {
		fmt.Fprintf(stderr, "dnsagent send --http: unknown call %q: use status, create, delete, resync or verify\n", kind)
		return 2
	}
	client, token, err := h.client(timeout)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent send --http:", err)
		return 2
	}
	req, err := http.NewRequest(route[0], strings.TrimSuffix(h.url, "/")+"/v1/zones/"+zone+route[1], nil)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent send --http:", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent send --http: no answer:", err)
		return 3
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(stdout, ";; %s %s: %s\n%s", req.Method, req.URL.Path, resp.Status, body)
	if resp.StatusCode/100 != 2 || (kind == "verify" && !strings.Contains(string(body), `"equal": true`)) {
		return 1
	}
	return 0
}

func (h httpOptions) client(timeout time.Duration) (*http.Client, string, error) {
	if h.tokenFile == "" {
		return nil, "", errors.New("--token-file is required")
	}
	token, err := firstToken(h.tokenFile)
	if err != nil {
		return nil, "", err
	}
	cfg := &tls.Config{}
	if h.ca != "" {
		pem, err := os.ReadFile(h.ca)
		if err != nil {
			return nil, "", err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("--cacert %s: no PEM certificate", h.ca)
		}
	}
	if h.cert != "" {
		cert, err := tls.LoadX509KeyPair(h.cert, h.key)
		if err != nil {
			return nil, "", fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: cfg}}, token, nil
}

// firstToken reads the token of the first line of a tokens file (TOKEN or NAME TOKEN).
func firstToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 && !strings.HasPrefix(fields[0], "#") {
			return fields[len(fields)-1], nil
		}
	}
	return "", fmt.Errorf("%s: no token", path)
}

package control

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/option"
)

// DefaultRateLimit is how many calls a second one source may make (control_rate_limit).
const DefaultRateLimit = 5

// Config is the control API's part of [service:agent].
type Config struct {
	Listen     string         // control_listen; empty: no control API
	TokensFile string         // control_tokens_file: bearer tokens, one a line
	Allow      middleware.ACL // control_allow: sources allowed; loopback by default
	TLSCert    string         // control_tls_cert and control_tls_key: serve HTTPS
	TLSKey     string
	ClientCA   string  // control_tls_client_ca: require client certificates signed by it
	RateLimit  float64 // calls a second per source, bursts of twice that; 0: no limit
}

// ReadConfig reads the control_* options of [service:agent], reporting mistakes through s.
func ReadConfig(s option.Reader) Config {
	c := Config{
		Listen:     s.String("control_listen", ""),
		TokensFile: s.String("control_tokens_file", ""),
		TLSCert:    s.String("control_tls_cert", ""),
		TLSKey:     s.String("control_tls_key", ""),
		ClientCA:   s.String("control_tls_client_ca", ""),
		RateLimit:  DefaultRateLimit,
	}
	if v := s.String("control_rate_limit", ""); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 {
			s.Errorf("control_rate_limit", "%q: calls a second per source, 0 for no limit", v)
		}
		c.RateLimit = n
	}
	acl, err := middleware.ParseACL(s.List("control_allow"))
	if err != nil {
		s.Errorf("control_allow", "%v", err)
	}
	c.Allow = acl
	if c.Allow.Empty() {
		c.Allow = middleware.LoopbackACL()
	}
	if c.Listen == "" {
		return c
	}
	if _, err := netip.ParseAddrPort(c.Listen); err != nil {
		s.Errorf("control_listen", "%q is not IP:port", c.Listen)
	}
	if c.TokensFile == "" {
		s.Errorf("control_tokens_file", "required with control_listen: a file of bearer tokens, one a line")
	} else if _, err := readTokens(c.TokensFile); err != nil {
		s.Errorf("control_tokens_file", "%v", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		s.Errorf("control_tls_cert", "control_tls_cert and control_tls_key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		s.Errorf("control_tls_client_ca", "client certificates need TLS: set control_tls_cert and control_tls_key")
	}
	if _, err := c.TLS(); err != nil {
		s.Errorf("control_tls_cert", "%v", err)
	}
	return c
}

// TLS builds the server's TLS configuration; nil without control_tls_cert. With a client
// CA, certificates a client presents are verified in the handshake, and a client that
// presents none is refused with 403 by the handler, so the refusal is audited.
func (c Config) TLS() (*tls.Config, error) {
	if c.TLSCert == "" || c.TLSKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("loading the control API's certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("control_tls_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("control_tls_client_ca: no PEM certificate in " + c.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

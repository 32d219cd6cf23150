package service

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Two agents in one process (an embedding program, or tests) each count their own
// requests: a refusal one of them gave, or a message its listener could not read, never
// shows on the other's /metrics.
func TestAgentsCountTheirOwnRequests(t *testing.T) {
	agents := map[string]*Service{}
	for _, source := range []string{"192.0.2.1", "198.51.100.7"} { // allowed; not in allow_notify
		s := New(testConfig(t, ""), memory.New(), zap.NewNop())
		t.Cleanup(s.transfer.Close)
		w := requesttest.New(source, false)
		s.handler.ServeDNS(context.Background(), w, new(dns.Msg).SetNotify("not-held.example."))
		agents[source] = s
	}
	// The first agent's listener also meets bytes that are no DNS message.
	agents["192.0.2.1"].server(&dns.Server{}, nil).MsgInvalidFunc([]byte{1, 2, 3}, errors.New("short header"))
	for source, want := range map[string]struct{ has, hasNot string }{
		"192.0.2.1":    {`dnsagent_refused_total{reason="unknown_zone"} 1`, `reason="acl"`},
		"198.51.100.7": {`dnsagent_refused_total{reason="acl"} 1`, `reason="unknown_zone"`},
	} {
		metrics := scrape(t, agents[source])
		if !strings.Contains(metrics, want.has) || strings.Contains(metrics, want.hasNot) ||
			!strings.Contains(metrics, `dnsagent_requests_total{opcode="NOTIFY",rcode="REFUSED"} 1`) {
			t.Errorf("the agent that refused a NOTIFY from %s shows on /metrics:\n%s\nwant %s, once, and nothing with %s",
				source, grepLines(metrics, "dnsagent_re"), want.has, want.hasNot)
		}
		malformed := map[string]string{"192.0.2.1": "1", "198.51.100.7": "0"}[source]
		if !strings.Contains(metrics, "dnsagent_malformed_total "+malformed+"\n") {
			t.Errorf("the agent that served %s shows %q; want dnsagent_malformed_total %s", source,
				grepLines(metrics, "dnsagent_malformed"), malformed)
		}
	}
}

// scrape returns what s's /metrics serves.
func scrape(t *testing.T, s *Service) string {
	t.Helper()
	srv := httptest.NewServer(s.httpHandler())
	defer srv.Close()
	return string(get(t, srv.URL+"/metrics"))
}

// grepLines returns the lines of text that start with prefix, but those of a zero count.
func grepLines(text, prefix string) string {
	var lines []string
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, prefix) && !strings.HasSuffix(line, " 0\n") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "")
}

package service

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/handler"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// fakeZones records what the handler asked of the transfer engine.
type fakeZones struct {
	known   map[string]bool
	failing bool
	calls   []string
}

func (z *fakeZones) Notify(_ context.Context, zone string, _ transfer.Notify) error {
	z.calls = append(z.calls, "notify "+zone)
	if !z.known[zone] {
		return transfer.ErrUnknownZone
	}
	return nil
}

func (z *fakeZones) Create(_ context.Context, zone string) error {
	z.calls = append(z.calls, "create "+zone)
	if z.failing {
		return errors.New("primary unreachable")
	}
	return nil
}

func (z *fakeZones) Delete(_ context.Context, zone string) error {
	z.calls = append(z.calls, "delete "+zone)
	if z.failing {
		return errors.New("backend unreachable")
	}
	return nil
}

func testConfig(t *testing.T, extra string) *Config {
	t.Helper()
	f, err := config.Parse("[service:agent]\nmasters = 127.0.0.1:5354\nallow_notify = 192.0.2.1, 127.0.0.0/8\n" + extra)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ReadConfig(f)
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve runs one request, given in hex, through the whole chain and returns the reply in hex.
func serve(t *testing.T, zones *fakeZones, requestHex, source string) string {
	t.Helper()
	raw, err := hex.DecodeString(strings.ReplaceAll(requestHex, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t, zones)
	w := requesttest.New(source, false)
	h.ServeDNS(context.Background(), w, req)
	return hex.EncodeToString(w.Reply())
}

const exampleQuestion = "076578616d706c6503636f6d00"

// TestDesignateVectors replays the request/reply pairs of Designate's agent unit tests
// (SPEC.md §1): the worker compares flags, id and question, so the bytes must match.
func TestDesignateVectors(t *testing.T) {
	tests := []struct {
		name, request, source, reply, call string
	}{
		{"notify allowed", "1a722000000100000000000" + "0" + exampleQuestion + "00060001", "192.0.2.1",
			"1a72a400000100000000000" + "0" + exampleQuestion + "00060001", "notify example.com."},
		{"notify refused source", "1a7220000001000000000000" + exampleQuestion + "00060001", "198.51.100.7",
			"1a72a0050001000000000000" + exampleQuestion + "00060001", ""},
		{"notify with RD", "1a7221000001000000000000" + exampleQuestion + "00060001", "192.0.2.1",
			"1a72a5000001000000000000" + exampleQuestion + "00060001", "notify example.com."},
		{"create", "735d70000001000000000000" + exampleQuestion + "ff02ff00", "192.0.2.1",
			"735df4000001000000000000" + exampleQuestion + "ff02ff00", "create example.com."},
		{"create with AA as the worker sends it", "7de27400000100000000000" + "0" + exampleQuestion + "ff02ff00", "192.0.2.1",
			"7de2f4000001000000000000" + exampleQuestion + "ff02ff00", "create example.com."},
		{"delete", "735d70000001000000000000" + exampleQuestion + "ff03ff00", "192.0.2.1",
			"735df4000001000000000000" + exampleQuestion + "ff03ff00", "delete example.com."},
		{"create from a bad notifier", "735d70000001000000000000" + exampleQuestion + "ff02ff00", "198.51.100.7",
			"735df0050001000000000000" + exampleQuestion + "ff02ff00", ""},
		{"command of another type", "735d70000001000000000000" + exampleQuestion + "ff04ff00", "192.0.2.1",
			"735df0050001000000000000" + exampleQuestion + "ff04ff00", ""},
		{"update refused", "00012800000100000000000" + "0" + exampleQuestion + "00060001", "192.0.2.1",
			"0001a8050001000000000000" + exampleQuestion + "00060001", ""},
		{"status refused", "00011000000100000000000" + "0" + exampleQuestion + "00060001", "192.0.2.1",
			"000190050001000000000000" + exampleQuestion + "00060001", ""},
		{"query without destination refused", "00010100000100000000000" + "0" + exampleQuestion + "00060001", "192.0.2.1",
			"000181050001000000000000" + exampleQuestion + "00060001", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zones := &fakeZones{known: map[string]bool{"example.com.": true}}
			if got := serve(t, zones, tt.request, tt.source); got != tt.reply {
				t.Errorf("reply\n got %s\nwant %s", got, tt.reply)
			}
			if got := strings.Join(zones.calls, ","); got != tt.call {
				t.Errorf("engine calls %q, want %q", got, tt.call)
			}
		})
	}
}

// listenerService is a Service with what its listeners use (server, udpServers), without
// the engine and backend New builds.
func listenerService(cfg *Config, allow *middleware.AllowLists, log *zap.Logger) *Service {
	return &Service{cfg: cfg, log: log, allow: allow, counters: middleware.NewCounters(), dropped: newDroppedCounter()}
}

func newTestHandler(t *testing.T, zones handler.Zones) request.Handler {
	cfg := testConfig(t, "")
	return NewHandler(cfg, zones, middleware.NewAllowLists(cfg.AllowNotify, cfg.AllowQuery), zap.NewNop())
}

// A request with EDNS gets an OPT back as dnspython's make_response builds it for
// Designate's agent: payload 8192, extended rcode 0, version 0, no flags (DO is not
// echoed), no options (RFC 6891 §6.1.2-6.1.3). The OPT is root (00), TYPE41 (0029),
// payload as the class, then TTL (rcode, version, flags) and RDLENGTH.
func TestEDNSReplyCarriesDesignatesPayload(t *testing.T) {
	for _, tt := range []struct{ name, request, reply string }{
		{"notify, payload 1232, DO",
			"1a7220000001000000000001" + exampleQuestion + "00060001" + "00002904d000008000" + "0000",
			"1a72a4000001000000000001" + exampleQuestion + "00060001" + "0000292000000000000000"},
		{"create, payload 4096",
			"735d74000001000000000001" + exampleQuestion + "ff02ff00" + "000029100000000000" + "0000",
			"735df4000001000000000001" + exampleQuestion + "ff02ff00" + "0000292000000000000000"},
		{"refused opcode, payload 512",
			"000128000001000000000001" + exampleQuestion + "00060001" + "000029020000000000" + "0000",
			"0001a8050001000000000001" + exampleQuestion + "00060001" + "0000292000000000000000"},
	} {
		zones := &fakeZones{known: map[string]bool{"example.com.": true}}
		if got := serve(t, zones, tt.request, "192.0.2.1"); got != tt.reply {
			t.Errorf("%s: reply\n got %s\nwant %s", tt.name, got, tt.reply)
		}
	}
}

// A request with two questions (or none) gets FORMERR from the agent itself, as any other
// malformed request: id, QR, its opcode and RD echoed, its question section echoed as
// dnspython's make_response copies it. Over a real listener, so miekg/dns's own FORMERR
// (opcode QUERY, no question) cannot stand in for it.
func TestTwoQuestionsFormerrEchoesOpcode(t *testing.T) {
	cfg := testConfig(t, "")
	zones := &fakeZones{known: map[string]bool{"example.com.": true}}
	allow := middleware.NewAllowLists(cfg.AllowNotify, cfg.AllowQuery)
	s := listenerService(cfg, allow, zap.NewNop())
	udp, err := listenUDP("127.0.0.1:0", allow.Entries())
	if err != nil {
		t.Fatal(err)
	}
	pc := udp.conns[0]
	base := middleware.Server{Base: context.Background(), Handler: NewHandler(cfg, zones, allow, zap.NewNop())}
	servers, err := s.udpServers(udp, base)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range servers {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}

	const soa, create = exampleQuestion + "00060001", exampleQuestion + "ff02ff00"
	for _, tt := range []struct{ name, request, reply string }{
		{"NOTIFY with RD, two questions", "082121000002000000000000" + soa + soa, "0821a1010002000000000000" + soa + soa},
		{"NOTIFY, no question", "082020000000000000000000", "0820a0010000000000000000"},
		{"QUERY with RD, two questions", "082401000002000000000000" + soa + soa, "082481010002000000000000" + soa + soa},
		{"CREATE, two questions", "082374000002000000000000" + create + create, "0823f0010002000000000000" + create + create},
	} {
		raw, err := hex.DecodeString(tt.request)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(raw)
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		c.Close()
		if err != nil {
			t.Errorf("%s: no reply: %v", tt.name, err)
			continue
		}
		if got := hex.EncodeToString(buf[:n]); got != tt.reply {
			t.Errorf("%s: reply\n got %s\nwant %s", tt.name, got, tt.reply)
		}
	}
	if len(zones.calls) != 0 {
		t.Errorf("engine calls %v for malformed requests", zones.calls)
	}
}

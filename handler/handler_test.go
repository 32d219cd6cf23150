package handler

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/miekg/dns"
)

// engine stands in for the transfer engine: it notes each call and answers err (for
// NOTIFY: ErrUnknownZone for zones not in known).
type engine struct {
	known map[string]bool
	err   error
	calls []string
}

func (e *engine) Notify(_ context.Context, zone string, n transfer.Notify) error {
	call := "notify " + zone
	if n.HasSerial {
		call += " serial"
	}
	e.calls = append(e.calls, call)
	if !e.known[zone] {
		return transfer.ErrUnknownZone
	}
	return e.err
}

func (e *engine) Create(_ context.Context, zone string) error {
	e.calls = append(e.calls, "create "+zone)
	return e.err
}

func (e *engine) Delete(_ context.Context, zone string) error {
	e.calls = append(e.calls, "delete "+zone)
	return e.err
}

const question = "076578616d706c6503636f6d00" // example.com.

func msg(t *testing.T, hexRequest string) *dns.Msg {
	t.Helper()
	raw, err := hex.DecodeString(hexRequest)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	return m
}

// Each kind of request gets Designate's agent's answer, byte for byte, and reaches the
// engine only when it is served; refusals say why (the reason refused_total counts).
func TestHandler(t *testing.T) {
	notifyWithSerial := new(dns.Msg).SetNotify("example.com.")
	notifyWithSerial.Id = 0x1a72
	notifyWithSerial.Answer = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET},
		Ns: "ns.", Mbox: "h.", Serial: 7}}
	for _, tt := range []struct {
		name, request string
		req           *dns.Msg // instead of request
		err           error    // the engine's answer
		reply, call   string
		refused       string // the RefusedError reason, "" for none
	}{
		{name: "notify", request: "1a7220000001000000000000" + question + "00060001",
			reply: "1a72a4000001000000000000" + question + "00060001", call: "notify example.com."},
		{name: "notify, mixed case", request: "1a7220000001000000000000" + "074558616d706c6503434f4d00" + "00060001",
			reply: "1a72a4000001000000000000" + "074558616d706c6503434f4d00" + "00060001", call: "notify example.com."},
		{name: "notify with the new SOA", req: notifyWithSerial,
			reply: "1a72a4000001000000000000" + question + "00060001", call: "notify example.com. serial"},
		{name: "notify, unknown zone", request: "1a7220000001000000000000" + "07756e6b6e6f776e00" + "00060001",
			reply: "1a72a0050001000000000000" + "07756e6b6e6f776e00" + "00060001", call: "notify unknown.", refused: "unknown_zone"},
		{name: "notify, engine fails", request: "1a7220000001000000000000" + question + "00060001", err: errors.New("stopping"),
			reply: "1a72a0020001000000000000" + question + "00060001", call: "notify example.com."},
		{name: "notify for IN A", request: "1a7220000001000000000000" + question + "00010001",
			reply: "1a72a0050001000000000000" + question + "00010001", refused: "not_served"},
		{name: "create", request: "735d74000001000000000000" + question + "ff02ff00",
			reply: "735df4000001000000000000" + question + "ff02ff00", call: "create example.com."},
		{name: "delete", request: "735d74000001000000000000" + question + "ff03ff00",
			reply: "735df4000001000000000000" + question + "ff03ff00", call: "delete example.com."},
		// Designate's agent sets AA before it calls the backend to delete, so a failed
		// DELETE is SERVFAIL with AA (0xf402), a failed CREATE SERVFAIL without (0xf002).
		{name: "create fails", request: "735d74000001000000000000" + question + "ff02ff00", err: errors.New("primary unreachable"),
			reply: "735df0020001000000000000" + question + "ff02ff00", call: "create example.com."},
		{name: "delete fails", request: "735d74000001000000000000" + question + "ff03ff00", err: errors.New("backend unreachable"),
			reply: "735df4020001000000000000" + question + "ff03ff00", call: "delete example.com."},
		{name: "command of another type", request: "735d74000001000000000000" + question + "ff04ff00",
			reply: "735df0050001000000000000" + question + "ff04ff00", refused: "not_served"},
		{name: "command of another class", request: "735d74000001000000000000" + question + "ff020001",
			reply: "735df0050001000000000000" + question + "ff020001", refused: "not_served"},
		{name: "update", request: "000128000001000000000000" + question + "00060001",
			reply: "0001a8050001000000000000" + question + "00060001", refused: "opcode"},
		{name: "status", request: "000110000001000000000000" + question + "00060001",
			reply: "000190050001000000000000" + question + "00060001", refused: "opcode"},
		{name: "query without destination", request: "000101000001000000000000" + question + "00060001",
			reply: "000181050001000000000000" + question + "00060001", refused: "no_destination"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := &engine{known: map[string]bool{"example.com.": true}, err: tt.err}
			h := &Handler{Zones: e, CreateTimeout: time.Second}
			req := tt.req
			if req == nil {
				req = msg(t, tt.request)
			}
			w := requesttest.New("192.0.2.1", false)
			rcode, err := h.ServeDNS(context.Background(), w, req)
			if got := hex.EncodeToString(w.Reply()); got != tt.reply {
				t.Errorf("reply\n got %s\nwant %s", got, tt.reply)
			}
			if got := strings.Join(e.calls, ","); got != tt.call {
				t.Errorf("engine calls %q, want %q", got, tt.call)
			}
			if m := w.Msg(); m == nil || m.Rcode != rcode {
				t.Errorf("returned rcode %d, the reply says %v", rcode, m)
			}
			var refused *request.RefusedError
			switch {
			case tt.refused != "" && (!errors.As(err, &refused) || refused.Reason != tt.refused):
				t.Errorf("error %v, want a refusal for %s", err, tt.refused)
			case tt.refused == "" && (err == nil) != (rcode == dns.RcodeSuccess):
				t.Errorf("rcode %s with error %v", dns.RcodeToString[rcode], err)
			}
		})
	}
}

// Zone transfers are not relayed: the agent is no transfer proxy.
func TestHandlerDoesNotRelayTransfers(t *testing.T) {
	h := &Handler{Zones: &engine{}, Forward: &Forwarder{Destination: "127.0.0.1:1", Timeout: time.Second}}
	for _, qtype := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		w := requesttest.New("192.0.2.1", true)
		_, err := h.ServeDNS(context.Background(), w, new(dns.Msg).SetQuestion("example.com.", qtype))
		var refused *request.RefusedError
		if m := w.Msg(); m == nil || m.Rcode != dns.RcodeRefused || !errors.As(err, &refused) || refused.Reason != "not_served" {
			t.Errorf("%s: reply %v, error %v; want REFUSED, not_served", dns.Type(qtype), m, err)
		}
	}
}

// A CREATE whose check failed was logged by the engine with its cause: the handler marks
// the error so the request's line is not a second warning. A CREATE that ran out of time
// was not logged anywhere yet.
func TestFailedCreateMarkedLogged(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		logged bool
	}{
		{"check failed", fmt.Errorf("wrapped: %w", transfer.ErrCheckFailed), true},
		{"not done in time", errors.New("create example.com.: not done in time"), false},
	} {
		h := &Handler{Zones: &engine{err: tt.err}, CreateTimeout: time.Second}
		w := requesttest.New("192.0.2.1", false)
		_, err := h.ServeDNS(context.Background(), w, msg(t, "735d74000001000000000000"+question+"ff02ff00"))
		var logged *request.LoggedError
		if errors.As(err, &logged) != tt.logged || !errors.Is(err, tt.err) {
			t.Errorf("%s: error %#v; logged %v wanted", tt.name, err, tt.logged)
		}
	}
}

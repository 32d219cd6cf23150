package transfer

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
)

func tsigKey(alg string) *tsigkey.Key {
	return &tsigkey.Key{Name: "transfer.key.", Algorithm: alg, Secret: tsigSecret}
}

// RFC 8945 §5.3.1: in a multi-message answer a primary may sign only every hundredth
// message; the client takes the unsigned ones as covered by the next MAC, and refuses an
// answer whose last message is unsigned, more than 99 unsigned in a row, or a changed byte.
func TestTSIGMultiMessageTransfers(t *testing.T) {
	tests := []struct {
		name    string
		records int // 50 a message
		how     signing
		want    string // "" accepts
	}{
		{"every message signed", 1000, signing{}, ""},
		{"every 7th message signed", 1000, signing{every: 7}, ""},
		{"99 unsigned in a row", 5200, signing{every: 100}, ""},
		{"100 unsigned in a row", 5200, signing{every: 101}, "more than 99 unsigned messages"},
		{"last message unsigned", 1000, signing{lastUnsigned: true}, "last message must be signed"},
		{"last 5 messages unsigned", 1000, signing{every: 5, lastUnsigned: true}, "the last 5 messages are unsigned"},
		{"signed middle message altered", 1000, signing{alter: true}, "does not verify"},
		{"unsigned middle message altered", 1000, signing{every: 7, alter: true}, "covering the 6 unsigned messages before it) does not verify"},
	}
	for _, alg := range []string{dns.HmacSHA1, dns.HmacSHA256, dns.HmacSHA512} {
		// A generous stall timeout: the fake primary works out an IXFR of 5,200 records
		// before its first message, which took over a second on a loaded machine with -race.
		client := &Client{DialTimeout: testClient.DialTimeout, StallTimeout: eventuallyWithin, Key: tsigKey(alg)}
		for _, tt := range tests {
			t.Run(strings.TrimSuffix(alg, ".")+"/"+tt.name, func(t *testing.T) {
				p := startPrimary(t, "example.com.", 1, tt.records)
				p.set(func(p *fakePrimary) { p.tsig, p.signing = "transfer.key.", tt.how })
				ctx := context.Background()

				s, err := client.AXFR(ctx, p.addr, "example.com.")
				n := 0
				if err == nil {
					n, err = drain(s)
				}
				checkTSIGResult(t, "AXFR", err, tt.want)
				if err == nil && n != len(p.records) {
					t.Errorf("AXFR: %d records, want %d", n, len(p.records))
				}

				p.setZone(2, tt.records) // a new zone: the IXFR answer deletes and adds every record
				res, err := client.IXFR(ctx, p.addr, "example.com.", 1)
				checkTSIGResult(t, "IXFR", err, tt.want)
				if err == nil && (res.Changes == nil || len(res.Changes.Steps) != 1 || res.Changes.Steps[0].New.Serial != 2) {
					t.Errorf("IXFR: %+v, want one step to serial 2", res)
				}
			})
		}
	}
}

func checkTSIGResult(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want an error saying %q", what, err, want)
	}
}

// A refused signed transfer keeps the old zone, and the zone's status says why.
func TestTSIGRefusedTransferKeepsOldZone(t *testing.T) {
	for name, tt := range map[string]struct {
		how  signing
		want string
	}{
		"last message unsigned":  {signing{every: 4, lastUnsigned: true}, "last message must be signed"},
		"middle message altered": {signing{every: 4, alter: true}, "does not verify"},
	} {
		t.Run(name, func(t *testing.T) {
			p := startPrimary(t, "example.com.", 1, 1000)
			p.tsig = "transfer.key."
			m, be := newManagerWith(t, Config{Masters: []netip.AddrPort{p.addr}, Key: tsigKey(dns.HmacSHA256)}, memory.New())
			ctx := context.Background()
			if err := m.Create(ctx, "example.com."); err != nil {
				t.Fatalf("signed CREATE: %v", err)
			}
			p.set(func(p *fakePrimary) { p.signing = tt.how })
			p.setZone(2, 1200)
			m.Notify(ctx, "example.com.", Notify{})
			var st Status
			waitCheck(t, m, func() string { return fmt.Sprintf("no failed check recorded: %+v", st) }, func() bool {
				st, _ = m.Status("example.com.")
				return st.LastError != ""
			})
			if !strings.Contains(st.LastError, tt.want) {
				t.Errorf("last error %q, want one saying %q", st.LastError, tt.want)
			}
			waitSerial(t, be, "example.com.", 1)
			if rrs, _ := be.Records("example.com."); len(rrs) != 1002 {
				t.Errorf("%d records after a refused transfer, want the old 1002", len(rrs))
			}
		})
	}
}

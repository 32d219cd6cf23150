package request

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/miekg/dns"
)

// Replies are built as dnspython's make_response builds them for Designate's agent: id,
// opcode, RD and question echoed, AA only when asked, and an OPT with payload 8192,
// version 0 and no flags to a request with EDNS (the DO bit is not echoed).
func TestReply(t *testing.T) {
	const q = "076578616d706c6503636f6d00" + "00060001" // example.com. SOA IN
	for _, tt := range []struct {
		name, request string
		rcode         int
		aa            bool
		reply         string
	}{
		{"NOTIFY with RD, NOERROR AA", "1a7221000001000000000000" + q, dns.RcodeSuccess, true, "1a72a5000001000000000000" + q},
		{"CREATE, SERVFAIL", "735d74000001000000000000" + "076578616d706c6503636f6d00ff02ff00", dns.RcodeServerFailure, false,
			"735df0020001000000000000" + "076578616d706c6503636f6d00ff02ff00"},
		{"EDNS with DO", "1a7220000001000000000001" + q + "00002904d000008000" + "0000", dns.RcodeSuccess, true,
			"1a72a4000001000000000001" + q + "0000292000000000000000"},
	} {
		raw, _ := hex.DecodeString(tt.request)
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		w := requesttest.New("192.0.2.1", false)
		if rcode, err := WriteReply(w, req, tt.rcode, tt.aa); rcode != tt.rcode || err != nil {
			t.Errorf("%s: WriteReply returned %d, %v", tt.name, rcode, err)
		}
		if got := hex.EncodeToString(w.Reply()); got != tt.reply {
			t.Errorf("%s: reply\n got %s\nwant %s", tt.name, got, tt.reply)
		}
	}
}

// Refuse answers REFUSED and hands the reason up.
func TestRefuse(t *testing.T) {
	w := requesttest.New("192.0.2.1", false)
	why := Refused("acl", "not in the list")
	rcode, err := Refuse(w, new(dns.Msg).SetNotify("example.com."), why)
	var refused *RefusedError
	if rcode != dns.RcodeRefused || w.Msg().Rcode != dns.RcodeRefused || !errors.As(err, &refused) || refused.Reason != "acl" {
		t.Errorf("Refuse: %d, %v, reply %v", rcode, err, w.Msg())
	}
	if OpcodeName(OpcodeCC) != "CC" || OpcodeName(dns.OpcodeNotify) != "NOTIFY" || OpcodeName(9) != "OPCODE9" || RcodeName(16) != "BADVERS" {
		t.Errorf("names: %s %s %s %s", OpcodeName(OpcodeCC), OpcodeName(dns.OpcodeNotify), OpcodeName(9), RcodeName(16))
	}
}

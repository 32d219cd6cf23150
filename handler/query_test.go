package handler

import (
	"testing"

	"github.com/miekg/dns"
)

// PlainQuery takes what the chain would relay as it is, and leaves everything else to it:
// a wrong guess either way relays what should be refused or answered FORMERR/BADVERS.
func TestPlainQuery(t *testing.T) {
	pack := func(edit func(m *dns.Msg)) []byte {
		m := new(dns.Msg).SetQuestion("www.Example.com.", dns.TypeSOA)
		edit(m)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	none := func(*dns.Msg) {}
	edns := func(m *dns.Msg) { m.SetEdns0(1232, true) }
	plain := pack(none)
	for _, c := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"query", plain, true},
		{"query with RD, CD and AD", pack(func(m *dns.Msg) { m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData = true, true, true }), true},
		{"EDNS version 0, DO", pack(edns), true},
		{"EDNS with an option (cookie)", pack(func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}), false},
		{"EDNS version 1 (BADVERS)", pack(func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }), false},
		{"TSIG", pack(func(m *dns.Msg) { m.SetTsig("key.", dns.HmacSHA256, 300, 0) }), false},
		{"AXFR", pack(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }), false},
		{"IXFR", pack(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeIXFR }), false},
		{"NOTIFY", pack(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), false},
		{"opcode 14", pack(func(m *dns.Msg) { m.Opcode = 14 }), false},
		{"response", pack(func(m *dns.Msg) { m.Response = true }), false},
		{"two questions", pack(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), false},
		{"no question", pack(func(m *dns.Msg) { m.Question = nil }), false},
		{"an answer record", pack(func(m *dns.Msg) {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeA, Class: dns.ClassINET}}}
		}), false},
		{"an authority record", pack(func(m *dns.Msg) {
			m.Ns = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeA, Class: dns.ClassINET}}}
		}), false},
		{"another additional record", pack(func(m *dns.Msg) {
			m.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeA, Class: dns.ClassINET}}}
		}), false},
		{"a trailing byte", append(append([]byte(nil), plain...), 0), false},
		{"cut in the question", plain[:len(plain)-1], false},
		{"header only", plain[:12], false},
		{"compressed name", append(append([]byte(nil), plain[:12]...), 0xc0, 12, 0, 6, 0, 1), false},
	} {
		if got := PlainQuery(c.msg); got != c.want {
			t.Errorf("%s: PlainQuery = %v, want %v", c.name, got, c.want)
		}
	}
}

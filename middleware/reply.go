package middleware

import "github.com/miekg/dns"

// Reply builds an answer the way Designate's agent (dnspython's make_response) does: the
// request's id and opcode, QR, the RD bit copied, the question echoed, the rcode, and AA
// only when the agent answers authoritatively. Its unit tests compare such replies byte for
// byte, so nothing else is set. A request with EDNS gets an OPT back (RFC 6891 §7).
func Reply(req *dns.Msg, rcode int, authoritative bool) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id:               req.Id,
		Response:         true,
		Opcode:           req.Opcode,
		RecursionDesired: req.RecursionDesired,
		Authoritative:    authoritative,
		Rcode:            rcode,
	}}
	if len(req.Question) > 0 {
		m.Question = req.Question[:1]
	}
	if req.IsEdns0() != nil {
		m.SetEdns0(dns.DefaultMsgSize, false)
	}
	return m
}

// WriteReply sends Reply(req, rcode, authoritative) and returns rcode, for handlers that
// end with `return WriteReply(...)`.
func WriteReply(w dns.ResponseWriter, req *dns.Msg, rcode int, authoritative bool) (int, error) {
	return rcode, w.WriteMsg(Reply(req, rcode, authoritative))
}

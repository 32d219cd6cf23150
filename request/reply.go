package request

import "github.com/miekg/dns"

// designatePayload is the EDNS UDP payload size Designate's agent announces: dnspython's
// make_response answers an EDNS request with use_edns(0, 0, our_payload=8192).
const designatePayload = 8192

// Reply builds an answer the way Designate's agent (dnspython's make_response) does: the
// request's id and opcode, QR, the RD bit copied, the question section echoed, the rcode,
// and AA only when the agent answers authoritatively. Its unit tests compare such replies
// byte for byte, so nothing else is set. A request with EDNS gets an OPT back (RFC 6891 §7)
// with payload 8192, version 0 and no flags, as make_response builds it.
func Reply(req *dns.Msg, rcode int, authoritative bool) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id:               req.Id,
		Response:         true,
		Opcode:           req.Opcode,
		RecursionDesired: req.RecursionDesired,
		Authoritative:    authoritative,
		Rcode:            rcode,
	}}
	m.Question = append([]dns.Question(nil), req.Question...) // one, unless the request is malformed
	if req.IsEdns0() != nil {
		m.SetEdns0(designatePayload, false)
	}
	return m
}

// WriteReply sends Reply(req, rcode, authoritative) and returns rcode, for handlers that
// end with `return WriteReply(...)`.
func WriteReply(w dns.ResponseWriter, req *dns.Msg, rcode int, authoritative bool) (int, error) {
	return rcode, w.WriteMsg(Reply(req, rcode, authoritative))
}

// Refuse answers REFUSED with the question echoed, as Designate's agent does, and returns
// why, for the layers above to log and count.
func Refuse(w dns.ResponseWriter, r *dns.Msg, why error) (int, error) {
	rcode, err := WriteReply(w, r, dns.RcodeRefused, false)
	if err != nil {
		return rcode, err
	}
	return rcode, why
}

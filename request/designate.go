package request

import (
	"strconv"

	"github.com/miekg/dns"
)

// Designate's private codes (designate/backend/private_codes.py; SPEC §1). Its worker
// sends CREATE and DELETE as opcode 14 ("CC") with the question `ZONE CLASS65280
// TYPE65282` (or TYPE65283). SUCCESS and FAILURE are defined there but never sent; they
// are reserved here so nobody reuses the values.
const (
	OpcodeCC    = 14
	ClassCC     = 0xFF00 // 65280, the question class of every command
	TypeCreate  = 0xFF02 // 65282
	TypeDelete  = 0xFF03 // 65283
	RcodeCCOK   = 0xFF00 // SUCCESS, reserved
	RcodeCCFail = 0xFF01 // FAILURE, reserved
)

// Header flags words of the requests Designate's worker sends.
const (
	FlagsCC       = 0x7400 // opcode 14 + AA
	FlagsNotify   = 0x2000 // opcode 4
	FlagsNotifyRD = 0x2100 // opcode 4 + RD, as dnspython's make_query sets it
)

// OpcodeName names an opcode, including Designate's private one.
func OpcodeName(op int) string {
	if op == OpcodeCC {
		return "CC"
	}
	if name, ok := dns.OpcodeToString[op]; ok {
		return name
	}
	return "OPCODE" + strconv.Itoa(op)
}

// RcodeName names a reply's rcode. 16 is BADVERS: in a reply's rcode it can only be that
// (BADSIG, the same number, travels in a TSIG record under NOTAUTH), though miekg/dns
// names it BADSIG.
func RcodeName(rcode int) string {
	if rcode == dns.RcodeBadVers {
		return "BADVERS"
	}
	return dns.RcodeToString[rcode]
}

package backend

import (
	"fmt"

	"github.com/miekg/dns"
)

// AppendCanonical appends rr's comparison form to buf: its uncompressed wire format with
// the owner name lowercased (owner names compare case-insensitively, RFC 4343; names in
// the data are kept as they are), TTL included, so a TTL change is a change. It returns
// the extended buffer and the length, within what it appended, of the owner name. Two
// records are the same RR when their forms are equal (RFC 2181 §5). Packing sets rr's
// Rdlength: call it where nobody else reads rr at the same time.
func AppendCanonical(buf []byte, rr dns.RR) ([]byte, int, error) {
	start := len(buf)
	if need := start + dns.Len(rr) + 64; cap(buf) < need {
		buf = append(make([]byte, 0, max(need, 2*cap(buf))), buf...)
	}
	full := buf[:cap(buf)]
	n, err := dns.PackRR(rr, full, start, nil, false)
	if err != nil {
		return buf, 0, fmt.Errorf("record %s: %w", rr.Header().Name, err)
	}
	wire := full[start:n]
	// Label lengths (at most 63) never fall in 'A'..'Z': only label bytes change.
	i := 0
	for i < len(wire) && wire[i] != 0 {
		for j := i + 1; j <= i+int(wire[i]) && j < len(wire); j++ {
			if c := wire[j]; c >= 'A' && c <= 'Z' {
				wire[j] = c + 'a' - 'A'
			}
		}
		i += int(wire[i]) + 1
	}
	return full[:n], i + 1, nil
}

package middleware

import (
	"context"
	"fmt"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/miekg/dns"
)

// Section-count limits for requests the agent serves. RFC 1996 §3.7 lets a NOTIFY carry
// one SOA in the answer section, RFC 1995 §3 an IXFR request one SOA in the authority
// section, and the additional section holds at most an OPT and a TSIG.
const (
	maxAnswer     = 1
	maxAuthority  = 1
	maxAdditional = 2
)

// Validate answers FORMERR to requests that are malformed: not exactly one question, more
// records than a request of its kind carries, or (for NOTIFY and commands) a name that
// cannot be a zone. An unexpected class or type is not malformed; the handler refuses it.
// UPDATE messages carry many records by design; the handler refuses them as they are.
func Validate() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			if err := validate(r); err != nil {
				rcode, werr := WriteReply(w, r, dns.RcodeFormatError, false)
				if werr != nil {
					err = fmt.Errorf("%w (reply: %v)", err, werr)
				}
				return rcode, err
			}
			return next.ServeDNS(ctx, w, r)
		})
	}
}

func validate(r *dns.Msg) error {
	if len(r.Question) != 1 {
		return fmt.Errorf("malformed request: %d questions, want 1", len(r.Question))
	}
	if r.Opcode == dns.OpcodeUpdate {
		return nil
	}
	if len(r.Answer) > maxAnswer || len(r.Ns) > maxAuthority || len(r.Extra) > maxAdditional {
		return fmt.Errorf("malformed request: %d/%d/%d records in answer/authority/additional",
			len(r.Answer), len(r.Ns), len(r.Extra))
	}
	if r.Opcode == dns.OpcodeNotify || r.Opcode == OpcodeCC {
		if err := backend.ValidateZoneName(r.Question[0].Name); err != nil {
			return fmt.Errorf("malformed request: %w", err)
		}
	}
	return nil
}

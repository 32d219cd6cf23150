package middleware

import (
	"context"
	"errors"
	"fmt"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/request"
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
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			if err := validateEDNS(r); err != nil {
				rcode := dns.RcodeFormatError
				if errors.Is(err, errBadVersion) {
					rcode = dns.RcodeBadVers
				}
				reply, werr := request.WriteReply(w, r, rcode, false)
				if werr != nil {
					err = fmt.Errorf("%w (reply: %v)", err, werr)
				}
				return reply, err
			}
			if err := validate(r); err != nil {
				rcode, werr := request.WriteReply(w, r, dns.RcodeFormatError, false)
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
	if r.Opcode == dns.OpcodeNotify || r.Opcode == request.OpcodeCC {
		if err := backend.ValidateZoneName(r.Question[0].Name); err != nil {
			return fmt.Errorf("malformed request: %w", err)
		}
	}
	return nil
}

var errBadVersion = errors.New("EDNS version not supported")

// validateEDNS applies RFC 6891: an OPT record anywhere but the additional section, or
// more than one, is FORMERR (§6.1.1); an EDNS version above 0, the only one we speak, is
// BADVERS (§6.1.3). A reply to a request with an OPT in its additional section carries
// one of version 0 (request.Reply); for BADVERS it holds the extended rcode.
func validateEDNS(r *dns.Msg) error {
	for _, section := range [][]dns.RR{r.Answer, r.Ns} {
		for _, rr := range section {
			if rr.Header().Rrtype == dns.TypeOPT {
				return errors.New("malformed request: OPT record outside the additional section (RFC 6891 §6.1.1)")
			}
		}
	}
	var opt *dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return errors.New("malformed request: more than one OPT record (RFC 6891 §6.1.1)")
			}
			opt = o
		}
	}
	if opt != nil && opt.Version() > 0 {
		return fmt.Errorf("%w: version %d, we speak 0 (BADVERS, RFC 6891 §6.1.3)", errBadVersion, opt.Version())
	}
	return nil
}

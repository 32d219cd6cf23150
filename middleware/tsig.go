package middleware

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
)

// Kinds of request that can require TSIG (require_tsig).
const (
	KindNotify  = "notify"  // NOTIFY
	KindCommand = "command" // opcode-14 CREATE/DELETE
	KindQuery   = "query"   // relayed queries
)

// Kind names the kind of a request, or "" for opcodes the agent does not serve.
func Kind(r *dns.Msg) string {
	switch r.Opcode {
	case dns.OpcodeNotify:
		return KindNotify
	case request.OpcodeCC:
		return KindCommand
	case dns.OpcodeQuery:
		return KindQuery
	}
	return ""
}

// TSIG enforces RFC 8945 on requests. The listener verified any signature already (its
// TsigSecret holds the accepted keys; several at once allow rotation with overlap); this
// layer turns the verdict into the answers §5.3 prescribes, refuses unsigned requests of
// the kinds in require, and signs the replies to verified requests. algorithms maps each
// accepted key name (canonical: tsigkey.CanonicalName) to its algorithm.
func TSIG(require map[string]bool, algorithms map[string]string, now func() time.Time) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			t := r.IsTsig()
			if t == nil {
				if kind := Kind(r); require[kind] {
					rcode, err := request.WriteReply(w, r, dns.RcodeRefused, false)
					if err == nil {
						err = request.Refused("tsig_required", "unsigned %s refused: require_tsig includes %s", request.OpcodeName(r.Opcode), kind)
					}
					return rcode, err
				}
				return next.ServeDNS(ctx, w, r)
			}
			status := w.TsigStatus()
			if alg, known := algorithms[tsigkey.CanonicalName(t.Hdr.Name)]; !known || !strings.EqualFold(alg, dns.Fqdn(t.Algorithm)) {
				status = dns.ErrSecret // not our key, or ours with another algorithm: another key (with no keys the server verified nothing)
			}
			switch {
			case status == nil:
				req := request.From(ctx)
				req.TSIGKey = tsigkey.CanonicalName(t.Hdr.Name)
				ctx = request.WithMeta(ctx, req)
				return next.ServeDNS(ctx, &signingWriter{ResponseWriter: w, key: t.Hdr.Name, algorithm: t.Algorithm, now: now}, r)
			case errors.Is(status, dns.ErrSecret):
				return tsigError(w, r, t, dns.RcodeBadKey, now, fmt.Errorf("TSIG key %s is not known (BADKEY)", t.Hdr.Name))
			case errors.Is(status, dns.ErrTime):
				offset := time.Duration(int64(t.TimeSigned)-now().Unix()) * time.Second
				return tsigError(w, r, t, dns.RcodeBadTime, now,
					fmt.Errorf("TSIG key %s: time signed is %v off our clock (BADTIME)", t.Hdr.Name, offset))
			default:
				return tsigError(w, r, t, dns.RcodeBadSig, now, fmt.Errorf("TSIG key %s: %v (BADSIG)", t.Hdr.Name, status))
			}
		})
	}
}

// tsigError answers NOTAUTH with the TSIG error code. BADKEY and BADSIG replies carry an
// unsigned TSIG record (RFC 8945 §5.3.2); a BADTIME reply is signed and tells our clock in
// Other Data (§5.2.3), so the client can see the skew.
func tsigError(w dns.ResponseWriter, r *dns.Msg, t *dns.TSIG, code uint16, now func() time.Time, why error) (int, error) {
	reply := request.Reply(r, dns.RcodeNotAuth, false)
	rr := &dns.TSIG{
		Hdr:       dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.Fqdn(t.Algorithm), Fudge: t.Fudge, TimeSigned: t.TimeSigned, OrigId: r.Id, Error: code,
	}
	if code == dns.RcodeBadTime {
		var other [8]byte
		binary.BigEndian.PutUint64(other[:], uint64(now().Unix()))
		rr.OtherLen, rr.OtherData = 6, hex.EncodeToString(other[2:])
	}
	reply.Extra = append(reply.Extra, rr)
	if err := w.WriteMsg(reply); err != nil {
		return dns.RcodeNotAuth, errors.Join(why, err)
	}
	return dns.RcodeNotAuth, &request.RefusedError{Reason: "tsig", Detail: dns.RcodeToString[int(code)], Err: why}
}

// signingWriter signs every reply with the key that signed the request.
type signingWriter struct {
	dns.ResponseWriter
	key, algorithm string
	now            func() time.Time
}

func (s *signingWriter) WriteMsg(m *dns.Msg) error {
	m.SetTsig(s.key, s.algorithm, 300, s.now().Unix())
	return s.ResponseWriter.WriteMsg(m)
}

// Write signs a relayed answer: it is unpacked so the signature covers what is sent.
func (s *signingWriter) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, fmt.Errorf("signing a relayed answer: %w", err)
	}
	if err := s.WriteMsg(m); err != nil {
		return 0, err
	}
	return len(b), nil
}

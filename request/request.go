// Package request is the vocabulary the whole request path shares: the Handler type, what
// the agent knows about a request (Meta), replies built the way Designate's agent builds
// them, refusals, and Designate's private protocol codes. It is a leaf: middleware,
// handler, the send command and the test harness use it, and it imports none of them.
package request

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Handler serves one DNS request. It writes its reply to w itself and returns the rcode
// it answered with and the error that caused a failure, for the layers above to log.
type Handler interface {
	ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error)

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return f(ctx, w, r)
}

// Meta is what the agent knows about a request besides its bytes.
type Meta struct {
	ID        uint64
	Source    netip.AddrPort
	Transport string // "udp" or "tcp"
	Received  time.Time
	TSIGKey   string // the key that signed the request, once verified
}

type metaKey struct{}

// From returns the request's metadata; the zero Meta outside the chain.
func From(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey{}).(Meta)
	return m
}

// WithMeta returns ctx carrying m.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// RefusedError says why a request was refused, for the log and the refused_total metric.
type RefusedError struct {
	Reason string
	Detail string // a finer kind within the reason, for log sampling (the TSIG error)
	Err    error
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Refused builds a RefusedError.
func Refused(reason, format string, args ...any) error {
	return &RefusedError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// LoggedError is a failure whose cause was logged where it happened (a failed CREATE: the
// transfer engine's "zone check failed" line), so the request's own line goes to debug:
// one failure, one warning.
type LoggedError struct{ Err error }

func (e *LoggedError) Error() string { return e.Err.Error() }
func (e *LoggedError) Unwrap() error { return e.Err }

package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/dnsagent/dnsagent/logsample"
	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logging writes one line per request once it is answered, through l.
func Logging(l *RequestLog) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			rcode, err := next.ServeDNS(ctx, w, r)
			l.Done(request.From(ctx), r, rcode, err)
			return rcode, err
		})
	}
}

// RequestLog writes the request lines. Ordinary queries (SOA polling) and accepted
// NOTIFYs are logged at debug level so they do not flood the log; commands at info;
// failures at warn with their cause, sampled: one line per kind of failure (opcode, rcode,
// reason) per interval, counting the failures since the last line, so a flood of failing
// CREATEs makes a few lines, not one per request. The UDP query fast path, which bypasses
// the chain, logs its failures through the same one.
type RequestLog struct {
	log    *zap.Logger
	sample *logsample.Sampler[failureKind]
	now    func() time.Time
}

// NewRequestLog returns a RequestLog writing to log.
func NewRequestLog(log *zap.Logger, interval time.Duration, now func() time.Time) *RequestLog {
	return &RequestLog{log: log, sample: logsample.New[failureKind](interval, now), now: now}
}

// Debug reports whether answered queries are logged (one line each).
func (l *RequestLog) Debug() bool { return l.log.Core().Enabled(zapcore.DebugLevel) }

// Done logs request r, answered with rcode; err is why it failed or was refused.
func (l *RequestLog) Done(req request.Meta, r *dns.Msg, rcode int, err error) {
	level := zapcore.InfoLevel
	var refused *request.RefusedError
	var logged *request.LoggedError
	switch {
	case errors.As(err, &refused) && (refused.Reason == "acl" || refused.Reason == "rate_limit"):
		// A flood must not become a log flood: these layers log once per source
		// per interval themselves.
		level = zapcore.DebugLevel
	case errors.As(err, &logged):
		level = zapcore.DebugLevel // the cause has its line already (sampled, below)
	case err != nil:
		level = zapcore.WarnLevel
	case r.Opcode == dns.OpcodeQuery || r.Opcode == dns.OpcodeNotify:
		// Relayed queries and accepted NOTIFYs come by the thousand; what a NOTIFY
		// leads to gets its own line (the transfer summary).
		level = zapcore.DebugLevel
	}
	failures := 0
	if level == zapcore.WarnLevel || logged != nil {
		// Failures are sampled, also those at debug for their cause has a line:
		// with debug on, a flood of failing CREATEs must not become a log flood.
		kind := failureKind{opcode: r.Opcode, rcode: rcode}
		switch {
		case refused != nil:
			kind.reason, kind.detail = refused.Reason, refused.Detail
		case logged != nil:
			kind.reason = "logged" // apart from the warnings of the same rcode
		}
		n, due := l.sample.Due(kind)
		if !due {
			return
		}
		failures = n
	}
	ce := l.log.Check(level, "request")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.Uint64("request", req.ID),
		zap.Stringer("source", req.Source),
		zap.String("transport", req.Transport),
		zap.String("opcode", request.OpcodeName(r.Opcode)),
		zap.String("rcode", request.RcodeName(rcode)),
		zap.Duration("took", l.now().Sub(req.Received)),
	}
	if len(r.Question) > 0 {
		q := r.Question[0]
		fields = append(fields, zap.String("name", q.Name), zap.String("class", dns.Class(q.Qclass).String()),
			zap.String("type", dns.Type(q.Qtype).String()))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if failures > 0 {
		fields = append(fields, zap.Int("failures_since_last_line", failures))
	}
	ce.Write(fields...)
}

// failureKind is what the log samples failures by.
type failureKind struct {
	opcode, rcode  int
	reason, detail string
}

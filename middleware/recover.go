package middleware

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Recover turns a panic below it into a SERVFAIL reply and a logged error with the stack:
// one bad request must not take the agent down.
func Recover(log *zap.Logger) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (rcode int, err error) {
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				log.Error("panic while serving a request", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()),
					zap.Uint64("request", request.From(ctx).ID))
				rcode, err = dns.RcodeServerFailure, fmt.Errorf("panic: %v", p)
				if !written(w) {
					w.WriteMsg(request.Reply(r, rcode, false)) //nolint:errcheck // best effort after a panic
				}
			}()
			return next.ServeDNS(ctx, w, r)
		})
	}
}

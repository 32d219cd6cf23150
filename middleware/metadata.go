package middleware

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
)

var lastRequestID atomic.Uint64

// NewRequest numbers a request from source over transport ("udp" or "tcp") received now.
func NewRequest(source netip.AddrPort, transport string, received time.Time) request.Meta {
	source = netip.AddrPortFrom(source.Addr().Unmap(), source.Port())
	return request.Meta{ID: lastRequestID.Add(1), Source: source, Transport: transport, Received: received}
}

// Metadata attaches a request.Meta to the context and wraps the writer in a Recorder, so the
// layers after it can tell whether and how the request was answered.
func Metadata(now func() time.Time) Middleware {
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			var source netip.AddrPort
			transport := "udp"
			switch addr := w.RemoteAddr().(type) {
			case *net.TCPAddr:
				source, transport = addr.AddrPort(), "tcp"
			case interface{ AddrPort() netip.AddrPort }: // *net.UDPAddr, the UDP gate's sources
				source = addr.AddrPort()
			}
			req := NewRequest(source, transport, now())
			return next.ServeDNS(request.WithMeta(ctx, req), &Recorder{ResponseWriter: w}, r)
		})
	}
}

// Recorder remembers whether a reply was written and with which rcode.
type Recorder struct {
	dns.ResponseWriter
	Written bool
	Rcode   int
}

// WriteMsg records m's rcode and sends it.
func (rec *Recorder) WriteMsg(m *dns.Msg) error {
	rec.Written, rec.Rcode = true, m.Rcode
	return rec.ResponseWriter.WriteMsg(m)
}

// Write records the rcode of a raw reply (passthrough relays bytes as they came) and sends it.
func (rec *Recorder) Write(b []byte) (int, error) {
	rec.Written = true
	if len(b) >= 4 {
		rec.Rcode = int(b[3] & 0x0f)
	}
	return rec.ResponseWriter.Write(b)
}

// written reports whether any layer already answered on w.
func written(w dns.ResponseWriter) bool {
	rec, ok := w.(*Recorder)
	return ok && rec.Written
}

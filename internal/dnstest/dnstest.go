// Package dnstest serves DNS handlers on loopback for the unit tests' fake primaries.
package dnstest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// ServeTCP serves h over TCP on ip (a loopback address) at a free port until the test
// ends, and returns the address. tsig holds the TSIG secrets (name: base64) h may sign
// with; nil for none.
func ServeTCP(tb testing.TB, ip string, h dns.HandlerFunc, tsig map[string]string) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, Handler: h, TsigSecret: tsig, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe() //nolint:errcheck // ends with the test
	<-started
	tb.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return netip.MustParseAddrPort(ln.Addr().String())
}

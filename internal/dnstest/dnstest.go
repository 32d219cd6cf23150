// Package dnstest serves DNS handlers on loopback for the unit tests' fake primaries, and
// accepts connections for fakes that speak no DNS or misbehave.
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

// ServeConns accepts TCP connections on 127.0.0.1 at a free port until the test ends, and
// runs handle on each (Accept): for fake primaries that misbehave in ways a dns.Server
// will not (hang, reset, garble).
func ServeConns(tb testing.TB, handle func(c *net.TCPConn)) netip.AddrPort {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	Accept(tb, ln, func(c net.Conn) { handle(c.(*net.TCPConn)) })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// Accept accepts connections on ln until the test ends (then it closes ln), and runs
// handle on each in a goroutine of its own, closing the connection after it.
func Accept(tb testing.TB, ln net.Listener, handle func(c net.Conn)) {
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

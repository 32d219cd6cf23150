package middleware

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/logsample"
	"github.com/dnsagent/dnsagent/request"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// ACL is a list of addresses and networks allowed to send a kind of request.
type ACL struct {
	any      bool
	prefixes []netip.Prefix
}

// ParseACL reads allow-list items: IP addresses, CIDR networks, or the single word "any".
func ParseACL(items []string) (ACL, error) {
	var acl ACL
	for _, item := range items {
		if strings.EqualFold(item, "any") {
			acl.any = true
			continue
		}
		if prefix, err := netip.ParsePrefix(item); err == nil {
			acl.prefixes = append(acl.prefixes, prefix.Masked())
			continue
		}
		addr, err := netip.ParseAddr(item)
		if err != nil {
			return ACL{}, fmt.Errorf("%q is not an IP address, a CIDR network or \"any\"", item)
		}
		acl.prefixes = append(acl.prefixes, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
	}
	return acl, nil
}

// LoopbackACL allows only the loopback networks.
func LoopbackACL() ACL {
	return ACL{prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// Empty reports whether the list allows nobody.
func (a ACL) Empty() bool { return !a.any && len(a.prefixes) == 0 }

// Allows reports whether addr may send requests.
func (a ACL) Allows(addr netip.Addr) bool {
	if a.any {
		return true
	}
	addr = addr.Unmap().WithZone("") // a link-local source's zone (fe80::1%eth0) is no part of its address
	for _, p := range a.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String lists the entries, for logs.
func (a ACL) String() string {
	var items []string
	if a.any {
		items = append(items, "any")
	}
	for _, p := range a.prefixes {
		items = append(items, p.String())
	}
	return strings.Join(items, ", ")
}

// AllowLists holds the allow lists the Allow layer checks; Set swaps them while the agent
// serves (SIGHUP), so a request sees either the old lists or the new ones.
type AllowLists struct {
	p atomic.Pointer[[2]ACL]
}

// NewAllowLists returns lists allowing notify for NOTIFY and commands, query for queries.
func NewAllowLists(notify, query ACL) *AllowLists {
	l := &AllowLists{}
	l.Set(notify, query)
	return l
}

// Set replaces both lists at once.
func (l *AllowLists) Set(notify, query ACL) { l.p.Store(&[2]ACL{notify, query}) }

// Known reports whether addr is in either list. Known sources are served first when
// requests queue up, and only they may hold more than a small share of the TCP slots.
func (l *AllowLists) Known(addr netip.Addr) bool {
	acls := l.p.Load()
	return acls[0].Allows(addr) || acls[1].Allows(addr)
}

// Entries lists the networks of both lists, the notify list's first, each once; "any" is
// 0.0.0.0/0 and ::/0. The UDP listener gives each its own receive queue (service/steer.go).
func (l *AllowLists) Entries() []netip.Prefix {
	var out []netip.Prefix
	for _, acl := range l.p.Load() {
		prefixes := slices.Clone(acl.prefixes)
		if acl.any {
			prefixes = append(prefixes, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
		}
		for _, p := range prefixes {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// Query reports whether addr may send queries.
func (l *AllowLists) Query(addr netip.Addr) bool { return l.p.Load()[1].Allows(addr) }

// Allow refuses NOTIFY and commands (opcode 14) from sources outside the notify list, and
// queries from sources outside the query list, with REFUSED and the question echoed, as
// Designate does. Other opcodes pass through from a source in either list (the handler
// refuses them); from any other source they are refused here. A refused TCP connection is
// closed after the reply, so a source in neither list cannot hold a connection slot with
// requests of any opcode.
func Allow(lists *AllowLists, log *zap.Logger, interval time.Duration, now func() time.Time) Middleware {
	sample := logsample.New[netip.Addr](interval, now)
	return func(next request.Handler) request.Handler {
		return request.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			source := request.From(ctx).Source.Addr()
			acls := lists.p.Load()
			var allowed bool
			switch r.Opcode {
			case dns.OpcodeNotify, request.OpcodeCC:
				allowed = acls[0].Allows(source)
			case dns.OpcodeQuery:
				allowed = acls[1].Allows(source)
			default:
				if acls[0].Allows(source) || acls[1].Allows(source) {
					return next.ServeDNS(ctx, w, r)
				}
			}
			if !allowed {
				rcode, err := request.WriteReply(w, r, dns.RcodeRefused, false)
				if err == nil {
					err = request.Refused("acl", "%s from %s refused: not in the allow list", request.OpcodeName(r.Opcode), source)
				}
				if request.From(ctx).Transport == "tcp" {
					w.Close() //nolint:errcheck // the reply is written; the server stops reading
				}
				if n, ok := sample.Due(source); ok {
					log.Warn("refused: source not in the allow list", zap.Stringer("source", source),
						zap.String("opcode", request.OpcodeName(r.Opcode)), zap.Int("refused_since_last_line", n))
				}
				return rcode, err
			}
			return next.ServeDNS(ctx, w, r)
		})
	}
}

package middleware

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/miekg/dns"
)

// Past its cap a slow kind is answered SERVFAIL at once, while other kinds and the
// requests already in pass; a slot freed is taken again.
func TestBusyCapsSlowKinds(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	slow := request.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		if r.Opcode == request.OpcodeCC {
			started.Done()
			<-release
		}
		return request.WriteReply(w, r, dns.RcodeSuccess, true)
	})
	h := Busy(map[string]Slots{KindCommand: NewSlots(2)})(slow)
	create := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", request.TypeCreate)
		m.Opcode, m.Question[0].Qclass = request.OpcodeCC, request.ClassCC
		return m
	}
	w := requesttest.New("192.0.2.1", false)
	var done sync.WaitGroup
	started.Add(2)
	for range 2 {
		done.Add(1)
		go func() { defer done.Done(); h.ServeDNS(context.Background(), w, create()) }()
	}
	started.Wait()
	rcode, err := h.ServeDNS(context.Background(), w, create())
	if rcode != dns.RcodeServerFailure || err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("third CREATE: rcode %d, err %v; want SERVFAIL, busy", rcode, err)
	}
	notify := new(dns.Msg).SetNotify("example.com.")
	if rcode, err := h.ServeDNS(context.Background(), w, notify); rcode != dns.RcodeSuccess || err != nil {
		t.Errorf("NOTIFY while commands are at their cap: rcode %d, err %v", rcode, err)
	}
	close(release)
	done.Wait()
	started.Add(1)
	if rcode, err := h.ServeDNS(context.Background(), w, create()); rcode != dns.RcodeSuccess || err != nil {
		t.Errorf("CREATE after the others ended: rcode %d, err %v", rcode, err)
	}
}

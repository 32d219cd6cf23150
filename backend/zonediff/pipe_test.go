package zonediff

import (
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// hungSource gives one batch, then blocks in Next, as a transfer whose primary stopped
// sending, until it is interrupted.
type hungSource struct {
	sent        bool
	interrupted chan struct{}
}

func (s *hungSource) Next() ([]dns.RR, error) {
	if !s.sent {
		s.sent = true
		soa, _ := dns.NewRR("example.com. 300 IN SOA ns1.example.com. admin.example.com. 1 3600 600 86400 300")
		return []dns.RR{soa}, nil
	}
	<-s.interrupted
	return nil, errors.New("interrupted")
}

func (s *hungSource) Interrupt() { close(s.interrupted) }

// A reader that stops early (a diff that failed at its first records) frees the read-ahead
// goroutine blocked in a hung transfer by interrupting it, instead of waiting for the
// transfer's stall timeout.
func TestReadAheadClosedWhileSourceHangs(t *testing.T) {
	src := &hungSource{interrupted: make(chan struct{})}
	a := readAhead(src)
	if _, err := a.Next(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		a.close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close still waits for the hung source after 5 s: it was not interrupted")
	}
}

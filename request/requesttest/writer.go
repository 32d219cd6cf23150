// Package requesttest gives the tests of the request path (request, middleware, handler,
// service) one dns.ResponseWriter: dns.Server's writer without the socket.
package requesttest

import (
	"errors"
	"net"
	"sync"

	"github.com/miekg/dns"
)

// Writer keeps every reply written to it. Signed replies are signed with Provider as
// dns.Server signs them when it is set; Status is what TsigStatus reports (the listener's
// verdict on the request's signature).
type Writer struct {
	Remote     net.Addr // *net.UDPAddr or *net.TCPAddr; the transport follows it
	Status     error
	Provider   dns.TsigProvider
	RequestMAC string

	mu      sync.Mutex
	replies [][]byte
	closed  bool
}

// New returns a Writer for a request from ip over UDP, or TCP when tcp is set.
func New(ip string, tcp bool) *Writer {
	if tcp {
		return &Writer{Remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 53000}}
	}
	return &Writer{Remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 53000}}
}

func (w *Writer) tcp() bool { _, ok := w.Remote.(*net.TCPAddr); return ok }

// LocalAddr is the agent's address, on the request's transport.
func (w *Writer) LocalAddr() net.Addr {
	if w.tcp() {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5358}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5358}
}

// RemoteAddr is Remote.
func (w *Writer) RemoteAddr() net.Addr { return w.Remote }

// WriteMsg packs m (signing it when it carries a TSIG and Provider is set) and keeps it.
func (w *Writer) WriteMsg(m *dns.Msg) error {
	if w.Provider != nil && m.IsTsig() != nil {
		data, mac, err := dns.TsigGenerateWithProvider(m, w.Provider, w.RequestMAC, false)
		if err != nil {
			return err
		}
		w.RequestMAC = mac
		_, err = w.Write(data)
		return err
	}
	data, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// Write keeps a copy of b; over TCP a message must fit the two-byte length.
func (w *Writer) Write(b []byte) (int, error) {
	if w.tcp() && len(b) > dns.MaxMsgSize {
		return 0, errors.New("message too large for TCP")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replies = append(w.replies, append([]byte(nil), b...))
	return len(b), nil
}

// Close notes that the connection was closed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

func (w *Writer) TsigStatus() error   { return w.Status }
func (w *Writer) TsigTimersOnly(bool) {}
func (w *Writer) Hijack()             {}

// Replies returns the replies written so far, in order.
func (w *Writer) Replies() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.replies...)
}

// Reply returns the last reply written, nil if none.
func (w *Writer) Reply() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.replies) == 0 {
		return nil
	}
	return w.replies[len(w.replies)-1]
}

// Msg unpacks the last reply; nil if there is none or it does not unpack.
func (w *Writer) Msg() *dns.Msg {
	m := new(dns.Msg)
	if b := w.Reply(); b == nil || m.Unpack(b) != nil {
		return nil
	}
	return m
}

// Closed reports whether Close was called.
func (w *Writer) Closed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

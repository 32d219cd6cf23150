package handler

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/dnsagent/dnsagent/middleware"
	"github.com/miekg/dns"
)

// query relays an ordinary query to the local DNS server, so Designate can poll serials
// through the agent. Zone transfers are not relayed: the agent is no transfer proxy.
func (h *Handler) query(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if h.Forward == nil {
		return refuse(w, r, middleware.Refused("no_destination", "query: no query_destination configured"))
	}
	if qt := r.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		return refuse(w, r, middleware.Refused("not_served", "query: %s is not relayed", dns.Type(qt)))
	}
	reply, err := h.Forward.Exchange(ctx, r, middleware.RequestFrom(ctx).Transport == "tcp")
	if err != nil {
		rcode, werr := middleware.WriteReply(w, r, dns.RcodeServerFailure, false)
		return rcode, errors.Join(err, werr)
	}
	_, err = w.Write(reply)
	return int(reply[3] & 0x0f), err
}

// Forwarder relays queries to one server, over the transport the client used. Answers are
// relayed as raw bytes so nothing is lost or rewritten except the message id: a truncated
// UDP answer keeps its TC bit and the client retries over TCP itself.
type Forwarder struct {
	Destination string
	Timeout     time.Duration
}

// Exchange sends r to the destination with a fresh id and returns the answer with r's id.
func (f *Forwarder) Exchange(ctx context.Context, r *dns.Msg, tcp bool) ([]byte, error) {
	out := r.Copy()
	out.Id = dns.Id()
	if out.IsTsig() != nil { // verified here; the destination does not know the client's key
		out.Extra = out.Extra[:len(out.Extra)-1]
	}
	packed, err := out.Pack()
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, network, f.Destination)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", f.Destination, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline) //nolint:errcheck // shows up as an I/O error
	}
	var reply []byte
	if tcp {
		reply, err = exchangeTCP(conn, packed)
	} else {
		reply, err = exchangeUDP(conn, packed)
	}
	if err != nil {
		return nil, fmt.Errorf("query %s over %s: %w", f.Destination, network, err)
	}
	binary.BigEndian.PutUint16(reply, r.Id)
	return reply, nil
}

func exchangeTCP(conn net.Conn, packed []byte) ([]byte, error) {
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(packed)))
	if _, err := conn.Write(append(msg, packed...)); err != nil {
		return nil, err
	}
	var length [2]byte
	if _, err := io.ReadFull(conn, length[:]); err != nil {
		return nil, err
	}
	reply := make([]byte, binary.BigEndian.Uint16(length[:]))
	if _, err := io.ReadFull(conn, reply); err != nil {
		return nil, err
	}
	return reply, checkReply(reply, packed)
}

func exchangeUDP(conn net.Conn, packed []byte) ([]byte, error) {
	if _, err := conn.Write(packed); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		// Stray datagrams (a late answer to an earlier query) are skipped, not relayed.
		if checkReply(buf[:n], packed) == nil {
			return buf[:n:n], nil
		}
	}
}

// checkReply accepts an answer to the query: the same id, QR set, a full header.
func checkReply(reply, query []byte) error {
	if len(reply) < 12 || reply[0] != query[0] || reply[1] != query[1] || reply[2]&0x80 == 0 {
		return errors.New("the answer does not match the query")
	}
	return nil
}

package bind9

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

var _ backend.Reader = (*Backend)(nil)

// Read implements backend.Reader by AXFR from named (query_destination): what named
// serves, journal included, which in update mode the zone file alone does not show. named
// must allow the transfer to the agent (allow-transfer, etc/named.conf.snippet).
func (b *Backend) Read(ctx context.Context, zone string, each func([]dns.RR) error) error {
	if _, err := b.Serial(ctx, zone); err != nil { // not found, not ours, not served
		return err
	}
	if err := b.axfr(ctx, zone, each); err != nil {
		return fmt.Errorf("bind9 backend: read %s: AXFR from named at %s: %w", zone, b.cfg.QueryDestination, err)
	}
	return nil
}

func (b *Backend) axfr(ctx context.Context, zone string, each func([]dns.RR) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.cfg.QueryDestination)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Each message of the transfer must come within rndc_timeout.
	t := &dns.Transfer{Conn: &dns.Conn{Conn: conn}, ReadTimeout: b.cfg.RNDCTimeout}
	m := new(dns.Msg)
	m.SetAxfr(zone)
	envelopes, err := t.In(m, b.cfg.QueryDestination)
	if err != nil {
		return err
	}
	defer func() {
		for range envelopes { // let the reader goroutine end
		}
	}()
	soas := 0
	for env := range envelopes {
		if env.Error != nil {
			return env.Error
		}
		rrs := env.RR
		for i, rr := range rrs {
			if rr.Header().Rrtype != dns.TypeSOA {
				continue
			}
			if soas++; soas == 2 { // the closing SOA repeats the first
				rrs = append(rrs[:i:i], rrs[i+1:]...)
				break
			}
		}
		if err := each(rrs); err != nil {
			conn.SetDeadline(time.Now()) // abandon the transfer
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if soas < 2 {
		return fmt.Errorf("the transfer ended before the closing SOA")
	}
	return nil
}

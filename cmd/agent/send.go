package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
)

// send builds exactly what Designate's worker sends, sends it and prints the reply. Like
// the worker it counts only NOERROR with AA as success: exit 0; any other answer exits 1,
// no answer 3, a usage mistake 2.
func send(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("dnsagent send", flag.ContinueOnError)
	flags.SetOutput(stderr)
	server := flags.String("server", "127.0.0.1:5358", "agent address HOST:PORT")
	tcp := flags.Bool("tcp", false, "send over TCP (Designate's all_tcp)")
	tsig := flags.String("tsig", "", "sign with [ALG:]NAME:SECRET (ALG: hmac-sha256 by default)")
	timeout := flags.Duration("timeout", 30*time.Second, "how long to wait (Designate's poll_timeout)")
	var h httpOptions
	flags.StringVar(&h.url, "http", "", "use the control API at this URL (https://HOST:PORT) instead of DNS")
	flags.StringVar(&h.tokenFile, "token-file", "", "--http: bearer token file (the last field of its first line)")
	flags.StringVar(&h.ca, "cacert", "", "--http: CA certificate to verify the agent with")
	flags.StringVar(&h.cert, "cert", "", "--http: client certificate")
	flags.StringVar(&h.key, "key", "", "--http: client key")
	// Flags may come after the positional arguments, as in the documented usage.
	var positional []string
	for len(args) > 0 {
		if err := flags.Parse(args); err != nil {
			return 2
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		args = flags.Args()[1:]
	}
	if h.url != "" && len(positional) == 2 {
		return sendHTTP(h, positional[0], positional[1], *timeout, stdout, stderr)
	}
	if len(positional) != 2 {
		fmt.Fprintln(stderr, "usage: dnsagent send notify|create|delete ZONE --server HOST:PORT [--tcp] [--tsig [ALG:]NAME:SECRET]\n"+
			"       dnsagent send status|create|delete|resync|verify ZONE --http URL --token-file FILE [--cacert F] [--cert F --key F]")
		return 2
	}
	msg, err := designateMessage(positional[0], positional[1])
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent send:", err)
		return 2
	}
	client := &dns.Client{Net: "udp", Timeout: *timeout}
	if *tcp {
		client.Net = "tcp"
	}
	if *tsig != "" {
		name, alg, secret, err := parseTSIG(*tsig)
		if err != nil {
			fmt.Fprintln(stderr, "dnsagent send:", err)
			return 2
		}
		client.TsigSecret = map[string]string{name: secret}
		msg.SetTsig(name, alg, 300, time.Now().Unix())
	}
	reply, rtt, err := client.Exchange(msg, *server)
	if reply == nil {
		fmt.Fprintf(stderr, "dnsagent send: no answer from %s: %v\n", *server, err)
		return 3
	}
	// miekg/dns names the standard opcodes only; 14 is Designate's private CC opcode.
	if _, ok := dns.OpcodeToString[request.OpcodeCC]; !ok {
		dns.OpcodeToString[request.OpcodeCC] = "CC"
	}
	fmt.Fprintf(stdout, ";; answer from %s in %v\n%s", *server, rtt.Round(time.Microsecond), reply)
	if err != nil { // an answer that failed TSIG verification, e.g. BADKEY
		fmt.Fprintf(stderr, "dnsagent send: the answer does not verify: %v\n", err)
		return 1
	}
	if reply.Rcode != dns.RcodeSuccess || !reply.Authoritative {
		fmt.Fprintf(stderr, "dnsagent send: %s refused or failed: rcode %s, AA %v\n",
			positional[0], dns.RcodeToString[reply.Rcode], reply.Authoritative)
		return 1
	}
	return 0
}

// designateMessage builds the worker's request: NOTIFY with flags 0x2100 (RD set, as
// dnspython's make_query does), or a command with flags 0x7400 (opcode 14 and AA).
func designateMessage(kind, zone string) (*dns.Msg, error) {
	zone = backend.CanonicalZone(zone)
	if _, ok := dns.IsDomainName(zone); !ok {
		return nil, fmt.Errorf("%q is not a domain name", zone)
	}
	msg := &dns.Msg{MsgHdr: dns.MsgHdr{Id: dns.Id()}}
	switch kind {
	case "notify":
		msg.Opcode, msg.RecursionDesired = dns.OpcodeNotify, true
		msg.Question = []dns.Question{{Name: zone, Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}
	case "create", "delete":
		qtype := uint16(request.TypeCreate)
		if kind == "delete" {
			qtype = request.TypeDelete
		}
		msg.Opcode, msg.Authoritative = request.OpcodeCC, true
		msg.Question = []dns.Question{{Name: zone, Qtype: qtype, Qclass: request.ClassCC}}
	default:
		return nil, fmt.Errorf("unknown message %q: use notify, create or delete", kind)
	}
	return msg, nil
}

// parseTSIG reads dig -y style keys: [ALG:]NAME:SECRET.
func parseTSIG(spec string) (name, alg, secret string, err error) {
	parts := strings.Split(spec, ":")
	alg = dns.HmacSHA256
	switch len(parts) {
	case 2:
		name, secret = parts[0], parts[1]
	case 3:
		if alg = tsigkey.Algorithm(parts[0]); alg == "" {
			return "", "", "", fmt.Errorf("--tsig %q: unknown algorithm %q: use hmac-sha256, hmac-sha512 or hmac-sha1", spec, parts[0])
		}
		name, secret = parts[1], parts[2]
	default:
		return "", "", "", fmt.Errorf("--tsig %q: want [ALG:]NAME:SECRET", spec)
	}
	return tsigkey.CanonicalName(name), alg, secret, nil
}

package harness

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TimeWaits counts this host's TCP sockets toward addr (ip:port) in TIME_WAIT, or on
// their way to it (FIN_WAIT1, FIN_WAIT2, CLOSING: this side closed first and the peer's
// FIN may still be coming), from /proc/net/tcp and tcp6 (proc_net_tcp(5)): each holds a
// local port for 60 s after the side that closed first closed it.
func TimeWaits(addr string) (int, error) {
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || !closedHere[fields[3]] {
				continue
			}
			if remote, err := procAddr(fields[2]); err == nil && remote == want {
				n++
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
	}
	return n, nil
}

// closedHere are the TCP states (include/net/tcp_states.h) of a socket whose side closed
// first: FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSING.
var closedHere = map[string]bool{"04": true, "05": true, "06": true, "0B": true}

// procAddr decodes an address of /proc/net/tcp: the address in hex as the kernel holds
// it (32-bit words in host order, little-endian here), a colon, the port in hex.
func procAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	b, err := hex.DecodeString(host)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q", s)
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

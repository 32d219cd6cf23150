package service

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Receive queues per source in the kernel (issue 14). The gate (udpgate.go) serves allowed
// sources first, but only among the datagrams it has read: when a flood arrives faster
// than the agent reads, the kernel drops what does not fit in the socket's receive buffer,
// an allowed source's datagrams alike (bench/FLOOD.md: 21% with a flooder on both cores).
// So a listen address gets several UDP sockets on the same address and port
// (SO_REUSEPORT, socket(7)), and a classic BPF program attached to the group
// (SO_ATTACH_REUSEPORT_CBPF) picks the socket of each datagram by its source address:
// allow-list entry i's sources go to socket i mod n (n: the entries, at most steerSockets),
// every other source to the last socket. A flood then fills the buffer of its own socket
// only: strangers never crowd out an allowed source, nor does one allowed entry (a
// Designate host) another that has a socket of its own.
const steerSockets = 4 // sockets for the allowed sources; one more takes the others

// udpListener is the UDP side of one listen address: one socket, or several steered.
type udpListener struct {
	conns []*net.UDPConn // conns[0] also sends the replies; with steering the last takes the strangers
	// unsteered says why a listener with allow-list entries has one socket only (the
	// kernel refused the program): logged by the caller.
	unsteered error
}

// listenUDP binds addr: steered sockets when there are allow-list entries, else one.
func listenUDP(addr string, entries []netip.Prefix) (*udpListener, error) {
	n := min(len(entries), steerSockets)
	if n == 0 {
		return listenOne(addr)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	l := &udpListener{}
	for len(l.conns) < n+1 {
		if len(l.conns) == 1 { // the same port as the first, which may have been 0
			addr = l.conns[0].LocalAddr().String()
		}
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.conns = append(l.conns, pc.(*net.UDPConn))
	}
	if err := l.steer(entries); err != nil {
		// Without a program the kernel would spread sources over the sockets by hash
		// (and let another process of this user join the group): one socket, unshared.
		l.Close()
		one, lerr := listenOne(addr)
		if lerr != nil {
			return nil, lerr
		}
		one.unsteered = err
		return one, nil
	}
	return l, nil
}

func listenOne(addr string) (*udpListener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	return &udpListener{conns: []*net.UDPConn{pc.(*net.UDPConn)}}, nil
}

// steer attaches the program for entries to the socket group (replacing the one before,
// as on SIGHUP); a listener of one socket has nothing to steer.
func (l *udpListener) steer(entries []netip.Prefix) error {
	if len(l.conns) == 1 {
		return nil
	}
	prog, err := steerProgram(entries, len(l.conns)-1)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	raw, err := l.conns[0].SyscallConn()
	if err != nil {
		return err
	}
	if cerr := raw.Control(func(fd uintptr) {
		err = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("steering UDP sources to their own sockets (SO_ATTACH_REUSEPORT_CBPF): %w", err)
	}
	return nil
}

// Close closes every socket.
func (l *udpListener) Close() {
	for _, c := range l.conns {
		c.Close()
	}
}

// skfNetOff makes a BPF load relative to the network (IP) header rather than to the
// UDP payload the program is given (SKF_NET_OFF, linux/filter.h).
const skfNetOff = 0xfff00000

// maxSteerInstructions is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxSteerInstructions = 4096

// steerProgram returns the program choosing the socket of a datagram: the index of the
// first entry containing its source, mod allowed; allowed (the last socket) for the rest.
func steerProgram(entries []netip.Prefix, allowed int) ([]bpf.RawInstruction, error) {
	others := bpf.RetConstant{Val: uint32(allowed)}
	var v4, v6 []bpf.Instruction
	for i, p := range entries {
		ret := bpf.RetConstant{Val: uint32(i % allowed)}
		a := p.Addr().AsSlice()
		if p.Addr().Is4() {
			// X holds the source address (loaded once, below).
			v4 = append(v4, bpf.TXA{}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: wordMask(p.Bits())},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(a), SkipFalse: 1}, ret)
			continue
		}
		// The IPv6 source address is at bytes 8-23 of the header; compare the words the
		// prefix covers, going on to the next entry at the first that differs.
		var block []bpf.Instruction
		for w := 0; w < 4 && p.Bits() > 32*w; w++ {
			block = append(block, bpf.LoadAbsolute{Off: skfNetOff + 8 + uint32(4*w), Size: 4},
				bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: wordMask(p.Bits() - 32*w)},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(a[4*w:])})
		}
		for j := range block {
			if jump, ok := block[j].(bpf.JumpIf); ok {
				jump.SkipFalse = uint8(len(block) - j) // past the ret below
				block[j] = jump
			}
		}
		v6 = append(v6, append(block, ret)...)
	}
	v4 = append([]bpf.Instruction{bpf.LoadAbsolute{Off: skfNetOff + 12, Size: 4}, bpf.TAX{}}, append(v4, others)...)
	v6 = append(v6, others)
	prog := append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: skfNetOff, Size: 1}, // version and header length
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: 1},
		bpf.Jump{Skip: uint32(len(v4))}, // to the IPv6 entries
	}, append(v4, v6...)...)
	if len(prog) > maxSteerInstructions {
		return nil, fmt.Errorf("allow lists too long to give each entry its own UDP socket (%d BPF instructions, at most %d)",
			len(prog), maxSteerInstructions)
	}
	return bpf.Assemble(prog)
}

// wordMask is the mask of the first bits (0 to 32 and more) of a 32-bit word.
func wordMask(bits int) uint32 {
	if bits >= 32 {
		return ^uint32(0)
	}
	return ^(^uint32(0) >> bits)
}

// Package rawudp reads and writes datagrams on the agent's UDP sockets with raw system
// calls, for the relayed-query path (issue 15).
//
// A system call made the usual way (net.UDPConn) enters the scheduler's system-call
// state, and the first one after every P went idle wakes the runtime's monitor thread
// (sysmon), which then runs every 20 µs until the process idles again (runtime/proc.go,
// sysmon and entersyscall). A relay idles between bursts thousands of times a second: at
// 16 clients sysmon and the wake-ups of it took about 30% of the agent's CPU (perf record,
// bench/README.md, Passthrough). The sockets here are non-blocking, so a call returns at
// once and may skip that state (syscall.RawSyscall); when there is nothing to read or no
// room to write, Go's netpoller still parks the goroutine (syscall.RawConn).
package rawudp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn makes raw calls on one UDP socket. It is safe for concurrent use.
type Conn struct {
	rc  syscall.RawConn
	v6  bool // an AF_INET6 socket: IPv4 peers are addressed as IPv4-mapped
	ops sync.Pool
}

// New wraps conn; conn stays the owner of the socket (deadlines, Close).
func New(conn *net.UDPConn) (*Conn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var sa syscall.Sockaddr
	if cerr := rc.Control(func(fd uintptr) { sa, err = syscall.Getsockname(int(fd)) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	_, v6 := sa.(*syscall.SockaddrInet6)
	c := &Conn{rc: rc, v6: v6}
	c.ops.New = func() any {
		o := new(op)
		o.run = o.call // bound once: a method value per call would be an allocation
		return o
	}
	return c, nil
}

// op is one recvmsg or sendmsg: its message header and what the call returned.
type op struct {
	msg   syscall.Msghdr
	iov   syscall.Iovec
	name  syscall.RawSockaddrInet6 // the larger of the two families; both keep the port, in network order, at bytes 2-3
	trap  uintptr
	n     int
	errno syscall.Errno
	run   func(fd uintptr) bool
}

// call makes the system call; false (EAGAIN) has the netpoller wait for the socket.
func (o *op) call(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(o.trap, fd, uintptr(unsafe.Pointer(&o.msg)), 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		o.n, o.errno = int(n), errno
		return true
	}
}

func (c *Conn) get(trap uintptr, b, oob []byte) *op {
	o := c.ops.Get().(*op)
	o.trap, o.n, o.errno = trap, 0, 0
	o.iov = syscall.Iovec{}
	if len(b) > 0 {
		o.iov.Base = &b[0]
	}
	o.iov.SetLen(len(b))
	o.msg = syscall.Msghdr{Iov: &o.iov, Iovlen: 1}
	if len(oob) > 0 {
		o.msg.Control = &oob[0]
		o.msg.SetControllen(len(oob))
	}
	return o
}

func (c *Conn) put(o *op) {
	o.iov, o.msg = syscall.Iovec{}, syscall.Msghdr{} // keep no buffer alive from the pool
	c.ops.Put(o)
}

// do runs o on the socket, waiting (with the socket's deadline) while it would block.
func (c *Conn) do(o *op, name string) (int, error) {
	var err error
	if o.trap == syscall.SYS_RECVMSG {
		err = c.rc.Read(o.run)
	} else {
		err = c.rc.Write(o.run)
	}
	if err != nil {
		return 0, err
	}
	if o.errno != 0 {
		return 0, os.NewSyscallError(name, o.errno)
	}
	return o.n, nil
}

// ReadMsg reads one datagram into b and its control messages into oob.
func (c *Conn) ReadMsg(b, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	o := c.get(syscall.SYS_RECVMSG, b, oob)
	defer c.put(o)
	o.msg.Name, o.msg.Namelen = (*byte)(unsafe.Pointer(&o.name)), uint32(unsafe.Sizeof(o.name))
	if n, err = c.do(o, "recvmsg"); err != nil {
		return 0, 0, from, err
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&o.name.Port))[:])
	switch o.name.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&o.name))
		from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case syscall.AF_INET6:
		from = netip.AddrPortFrom(netip.AddrFrom16(o.name.Addr), port)
	}
	return n, int(o.msg.Controllen), from, nil
}

// Read reads one datagram of a connected socket into b.
func (c *Conn) Read(b []byte) (int, error) {
	o := c.get(syscall.SYS_RECVMSG, b, nil)
	defer c.put(o)
	return c.do(o, "recvmsg")
}

// Write sends b on a connected socket.
func (c *Conn) Write(b []byte) error {
	o := c.get(syscall.SYS_SENDMSG, b, nil)
	defer c.put(o)
	_, err := c.do(o, "sendmsg")
	return err
}

// WriteMsg sends b to `to` with the control messages oob (see ReplyControl).
func (c *Conn) WriteMsg(b, oob []byte, to netip.AddrPort) error {
	o := c.get(syscall.SYS_SENDMSG, b, oob)
	defer c.put(o)
	switch {
	case c.v6:
		o.name = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: to.Addr().As16()}
		o.msg.Namelen = syscall.SizeofSockaddrInet6
	case to.Addr().Unmap().Is4():
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&o.name))
		*sa = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: to.Addr().Unmap().As4()}
		o.msg.Namelen = syscall.SizeofSockaddrInet4
	default:
		return errors.New("sendmsg: an IPv6 destination on an IPv4 socket")
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&o.name.Port))[:], to.Port())
	o.msg.Name = (*byte)(unsafe.Pointer(&o.name))
	_, err := c.do(o, "sendmsg")
	return err
}

// ReplyControl turns the control messages of a datagram read from a socket with packet
// info on (IP_PKTINFO, IPV6_PKTINFO) into those that send its reply from the address the
// datagram was sent to, as a listener on a wildcard address must (ip(7), ipv6(7): the
// source is ipi_spec_dst, ipi6_addr). It returns nil when oob holds no packet info.
// x/net's ipv4/ipv6 ControlMessage would do it in fewer lines, but it parses twice and
// allocates several times per reply: 58.7–61.5k against 61.2–62.2k q/s at 16 clients,
// 1-client p99 195–214 against 172–199 µs (issue 15's bench, one run, same build else).
func ReplyControl(oob []byte) []byte {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_PKTINFO && len(m.Data) >= syscall.SizeofInet4Pktinfo:
			received := (*syscall.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			out := control(syscall.IPPROTO_IP, syscall.IP_PKTINFO, syscall.SizeofInet4Pktinfo)
			reply := (*syscall.Inet4Pktinfo)(unsafe.Pointer(&out[syscall.CmsgLen(0)]))
			reply.Spec_dst = received.Addr // the datagram's destination address
			return out
		case m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == syscall.IPV6_PKTINFO && len(m.Data) >= syscall.SizeofInet6Pktinfo:
			received := (*syscall.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			out := control(syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, syscall.SizeofInet6Pktinfo)
			reply := (*syscall.Inet6Pktinfo)(unsafe.Pointer(&out[syscall.CmsgLen(0)]))
			reply.Addr = received.Addr
			return out
		}
	}
	return nil
}

// control returns a zeroed control message of the given level, type and data length.
func control(level, typ int32, n int) []byte {
	out := make([]byte, syscall.CmsgSpace(n))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&out[0]))
	h.Level, h.Type = level, typ
	h.SetLen(syscall.CmsgLen(n))
	return out
}

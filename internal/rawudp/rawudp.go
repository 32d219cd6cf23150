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

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
// datagram was sent to, as a listener on a wildcard address must. It returns nil when oob
// holds no packet info.
func ReplyControl(oob []byte) []byte {
	var dst net.IP
	var cm6 ipv6.ControlMessage
	var cm4 ipv4.ControlMessage
	switch {
	case cm6.Parse(oob) == nil && cm6.Dst != nil:
		dst = cm6.Dst
	case cm4.Parse(oob) == nil && cm4.Dst != nil:
		dst = cm4.Dst
	default:
		return nil
	}
	// An IPv4 datagram on a dual-stack socket carries both kinds, and ipv6's Marshal
	// leaves an IPv4-mapped source out: its reply takes IP_PKTINFO.
	if dst.To4() != nil {
		return (&ipv4.ControlMessage{Src: dst}).Marshal()
	}
	return (&ipv6.ControlMessage{Src: dst}).Marshal()
}

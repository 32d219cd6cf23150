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
	"slices"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

// op is one sendmsg: its message header and what the call returned.
type op struct {
	msg   syscall.Msghdr
	iov   syscall.Iovec
	name  syscall.RawSockaddrInet6 // the larger of the two families; both keep the port, in network order, at bytes 2-3
	errno syscall.Errno
	run   func(fd uintptr) bool
}

// call makes the system call; false (EAGAIN) has the netpoller wait for room.
func (o *op) call(fd uintptr) bool {
	_, errno, ok := rawCall(syscall.SYS_SENDMSG, fd, unsafe.Pointer(&o.msg), 0)
	o.errno = errno
	return ok
}

// rawCall makes the socket call trap(fd, p, n, 0, 0) and again after EINTR. It reports
// false on EAGAIN: the netpoller then waits for the socket (syscall.RawConn).
func rawCall(trap, fd uintptr, p unsafe.Pointer, n uintptr) (r uintptr, errno syscall.Errno, ok bool) {
	for {
		r, _, errno = syscall.RawSyscall6(trap, fd, uintptr(p), n, 0, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, 0, false
		}
		return r, errno, true
	}
}

// send sends b with the control messages oob to the address o.name holds (namelen
// bytes of it; none on a connected socket), waiting (with the socket's deadline) while
// it has no room.
func (c *Conn) send(o *op, b, oob []byte, namelen uint32) error {
	o.errno = 0
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
	if namelen > 0 {
		o.msg.Name, o.msg.Namelen = (*byte)(unsafe.Pointer(&o.name)), namelen
	}
	err := c.rc.Write(o.run)
	if err == nil && o.errno != 0 {
		err = os.NewSyscallError("sendmsg", o.errno)
	}
	o.iov, o.msg = syscall.Iovec{}, syscall.Msghdr{} // keep no buffer alive from the pool
	c.ops.Put(o)
	return err
}

// Write sends b on a connected socket.
func (c *Conn) Write(b []byte) error {
	return c.send(c.ops.Get().(*op), b, nil, 0)
}

// WriteMsg sends b to `to` with the control messages oob (see ReplyControl).
func (c *Conn) WriteMsg(b, oob []byte, to netip.AddrPort) error {
	o := c.ops.Get().(*op)
	namelen, err := c.sockaddr(&o.name, to)
	if err != nil {
		c.ops.Put(o)
		return err
	}
	return c.send(o, b, oob, namelen)
}

// addrPort is the address and port of a sockaddr the kernel filled in.
func addrPort(name *syscall.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&name.Port))[:])
	switch name.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(name))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case syscall.AF_INET6:
		addr := netip.AddrFrom16(name.Addr)
		if name.Scope_id != 0 { // a link-local source: the reply must name its interface
			addr = addr.WithZone(strconv.FormatUint(uint64(name.Scope_id), 10))
		}
		return netip.AddrPortFrom(addr, port)
	}
	return netip.AddrPort{}
}

// scopeID is the interface index a zone names: addrPort writes it as a number, the net
// package as an interface name.
func scopeID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// Batch reads the datagrams waiting on a socket, up to its size, with one recvmmsg(2)
// where recvmsg would take one call each. It is for one reader at a time.
type Batch struct {
	c     *Conn
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6
	bufs  [][]byte
	oobs  [][]byte
	n     int
	errno syscall.Errno
	read  bool             // whether the last call read (false: EAGAIN, nothing waited)
	run   func(fd uintptr) // call, bound once: a method value per call would be an allocation
}

// mmsghdr is struct mmsghdr (recvmmsg(2), sendmmsg(2)): one message's header and the
// bytes received or sent.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

// NewBatch returns a Batch of up to n datagrams of up to size bytes, each with room for
// oobSize bytes of control messages.
func (c *Conn) NewBatch(n, size, oobSize int) *Batch {
	b := &Batch{c: c, hdrs: make([]mmsghdr, n), iovs: make([]syscall.Iovec, n),
		names: make([]syscall.RawSockaddrInet6, n), bufs: make([][]byte, n), oobs: make([][]byte, n)}
	for i := range n {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		h := &b.hdrs[i].hdr
		h.Iov, h.Iovlen = &b.iovs[i], 1
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		if oobSize > 0 {
			b.oobs[i] = make([]byte, oobSize)
			h.Control = &b.oobs[i][0]
		}
	}
	b.run = b.call
	return b
}

func (b *Batch) call(fd uintptr) {
	n, errno, read := rawCall(unix.SYS_RECVMMSG, fd, unsafe.Pointer(&b.hdrs[0]), uintptr(len(b.hdrs)))
	b.n, b.errno, b.read = int(n), errno, read
}

// ReadNow reads the datagrams waiting, up to the batch's size, without waiting for one:
// it returns how many it read (see Datagram), 0 when none waits. A Poller tells when
// to call it.
func (b *Batch) ReadNow() (int, error) {
	for i := range b.hdrs {
		h := &b.hdrs[i].hdr
		h.Namelen = uint32(unsafe.Sizeof(b.names[i])) // the kernel writes back what it used
		h.SetControllen(len(b.oobs[i]))
		h.Flags = 0
	}
	b.n, b.errno = 0, 0
	if err := b.c.rc.Control(b.run); err != nil {
		return 0, err
	}
	if !b.read {
		return 0, nil
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.n, nil
}

// Turn is how many batches Drain reads at most: a socket's turn in a Poller, after
// which the others are read.
const Turn = 4

// Drain reads what waits, a batch at a time, and hands each batch to got (its n
// datagrams, valid until got returns: see Datagram). It stops at a batch that came back
// short, nothing more waiting, or after Turn batches, leaving the rest for the socket's
// next turn.
func (b *Batch) Drain(got func(n int)) error {
	for range Turn {
		n, err := b.ReadNow()
		if err != nil {
			return err
		}
		if n > 0 {
			got(n)
		}
		if n < len(b.hdrs) {
			return nil
		}
	}
	return nil
}

// Datagram returns the i-th datagram of the last ReadNow, its control messages and its
// source. They stay valid until the next ReadNow.
func (b *Batch) Datagram(i int) (msg, oob []byte, from netip.AddrPort) {
	h := &b.hdrs[i]
	return b.bufs[i][:h.len], b.oobs[i][:h.hdr.Controllen], addrPort(&b.names[i])
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

// Outbox gathers the datagrams a reader writes for one batch it read, so that they go
// out together: one sendmmsg(2) for a run of them on the same socket, where sendmsg would
// take a call each, and a receiver woken by the first preempts the writer once, not
// between every two (issue 15's passthrough bench, 16 clients: 66.6–68.4k relayed
// queries a second against 64.1–64.9k with a sendmsg per answer). It is for one
// goroutine at a time.
type Outbox struct {
	out   []outgoing
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6
	run   []mmsghdr // the headers the call sends
	n     int
	errno syscall.Errno
	send  func(fd uintptr) bool
}

type outgoing struct {
	conn   *Conn
	b, oob []byte
	to     netip.AddrPort
	done   Sender
}

// A Sender learns whether its datagram went out.
type Sender interface {
	Sent(err error)
}

// Add queues b, to go out on conn to `to` with the control messages oob (see
// ReplyControl) at the next Flush, which then tells done. b and oob must stay unchanged
// until then.
func (o *Outbox) Add(conn *Conn, b, oob []byte, to netip.AddrPort, done Sender) {
	o.out = append(o.out, outgoing{conn, b, oob, to, done})
}

// Flush sends what was added, in order, and tells each its Sender.
func (o *Outbox) Flush() {
	if len(o.out) == 0 {
		return
	}
	o.hdrs = slices.Grow(o.hdrs[:0], len(o.out))[:len(o.out)]
	o.iovs = slices.Grow(o.iovs[:0], len(o.out))[:len(o.out)]
	o.names = slices.Grow(o.names[:0], len(o.out))[:len(o.out)]
	for start := 0; start < len(o.out); {
		conn, end := o.out[start].conn, start+1
		for end < len(o.out) && o.out[end].conn == conn {
			end++
		}
		o.sendRun(start, end)
		start = end
	}
	clear(o.out) // keep no buffer or Sender alive
	clear(o.hdrs)
	clear(o.iovs)
	o.out = o.out[:0]
}

// sendRun sends out[start:end], all on one socket, and tells their Senders.
func (o *Outbox) sendRun(start, end int) {
	conn := o.out[start].conn
	for i := start; i < end; {
		// Lay out the messages from i on; one the socket cannot address fails alone.
		j := i
		var err error
		for ; j < end && err == nil; j++ {
			err = o.header(j)
		}
		if err != nil {
			j-- // out[j] failed
		}
		for i < j {
			sent, serr := o.sendmmsg(conn, i, j)
			for _, m := range o.out[i : i+sent] {
				m.done.Sent(nil)
			}
			i += sent
			if serr != nil { // the first of the rest failed: the others are tried again
				o.out[i].done.Sent(serr)
				i++
			}
		}
		if err != nil {
			o.out[j].done.Sent(err)
			i = j + 1
		}
	}
}

// header lays out the message header of out[i].
func (o *Outbox) header(i int) error {
	m := &o.out[i]
	o.iovs[i] = syscall.Iovec{}
	if len(m.b) > 0 {
		o.iovs[i].Base = &m.b[0]
	}
	o.iovs[i].SetLen(len(m.b))
	h := &o.hdrs[i].hdr
	*h = syscall.Msghdr{Iov: &o.iovs[i], Iovlen: 1}
	if len(m.oob) > 0 {
		h.Control = &m.oob[0]
		h.SetControllen(len(m.oob))
	}
	if m.to.IsValid() {
		namelen, err := m.conn.sockaddr(&o.names[i], m.to)
		if err != nil {
			return err
		}
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(&o.names[i])), namelen
	}
	return nil
}

// sendmmsg sends out[i:j] on conn, waiting while the socket has no room, and returns how
// many went out before the first that failed, and its error.
func (o *Outbox) sendmmsg(conn *Conn, i, j int) (int, error) {
	if o.send == nil {
		o.send = o.call
	}
	o.run, o.n, o.errno = o.hdrs[i:j], 0, 0
	defer func() { o.run = nil }()
	if err := conn.rc.Write(o.send); err != nil {
		return 0, err
	}
	if o.errno != 0 {
		return 0, os.NewSyscallError("sendmmsg", o.errno)
	}
	if o.n <= 0 { // never for a non-empty run; it would have the caller loop forever
		return 0, errors.New("sendmmsg sent nothing")
	}
	return o.n, nil
}

func (o *Outbox) call(fd uintptr) bool {
	n, errno, ok := rawCall(unix.SYS_SENDMMSG, fd, unsafe.Pointer(&o.run[0]), uintptr(len(o.run)))
	o.n, o.errno = int(n), errno
	return ok
}

// sockaddr writes to's address and port into name, as the socket's family takes it, and
// returns its length.
func (c *Conn) sockaddr(name *syscall.RawSockaddrInet6, to netip.AddrPort) (uint32, error) {
	var n uint32
	switch {
	case c.v6:
		*name = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: to.Addr().As16(), Scope_id: scopeID(to.Addr().Zone())}
		n = syscall.SizeofSockaddrInet6
	case to.Addr().Unmap().Is4():
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(name))
		*sa = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: to.Addr().Unmap().As4()}
		n = syscall.SizeofSockaddrInet4
	default:
		return 0, errors.New("sendmsg: an IPv6 destination on an IPv4 socket")
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&name.Port))[:], to.Port())
	return n, nil
}

package rawudp

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller reads several sockets from one goroutine: it calls each socket's read function
// whenever the socket has something to read. Its sockets are in an epoll set of its own
// (epoll(7)), whose descriptor Go's netpoller waits for like a socket's; so no thread
// blocks in the kernel and no call goes through the scheduler's system-call state.
//
// Why one goroutine: the relayed-query path had one reader goroutine per socket (the
// gate's, the upstream one's). Queries and answers then woke two goroutines, often a
// second thread through a futex: parking and waking took 26% of the agent's time at 16
// clients (perf record), and the path relayed 0.51× of named's direct throughput against
// dnsdist's 0.56–0.58×. With one goroutine for the gate's socket and four upstream
// sockets (which named answers on more than one of its threads) parking and waking took
// 10%, futexes next to nothing, and the path relayed 0.55–0.58×, as dnsdist did
// (bench/README.md, Passthrough).
//
// The zero value is ready to use. The goroutine and the epoll set exist while a socket is
// in the Poller, and go away with the last one.
type Poller struct {
	mu      sync.Mutex
	file    *os.File         // the epoll set; nil while no socket is in
	epfd    int              // file's descriptor
	readers map[int32]func() // by the key each socket was added with
	next    int32            // the key of the next socket added
	running bool             // loop runs for file

	// The loop's own.
	events []unix.EpollEvent
	n      int // events the last epoll_wait returned
	wait   func(fd uintptr) bool
}

// Add puts c in the Poller: read is called, from the Poller's goroutine, whenever c has a
// datagram or an error waiting, and again as long as it has (epoll's level-triggered
// mode): read should take what waits, but may leave some so that the other sockets have
// their turn (Batch.Drain does both). remove takes c out; call it before closing c
// (closing takes a socket out of the set, but its read function would stay).
func (p *Poller) Add(c *Conn, read func()) (remove func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file == nil {
		if err := p.open(); err != nil {
			return nil, err
		}
	}
	key := p.next
	p.next++
	var ctlErr error
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: key}
	if err := c.rc.Control(func(fd uintptr) { ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) }); err != nil {
		return nil, err
	}
	if ctlErr != nil {
		return nil, os.NewSyscallError("epoll_ctl", ctlErr)
	}
	p.readers[key] = read
	if !p.running {
		p.running = true
		go p.loop(p.file)
	}
	var once sync.Once
	return func() { once.Do(func() { p.remove(c, key) }) }, nil
}

// open makes the epoll set, non-blocking so that the netpoller waits for it.
func (p *Poller) open() error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return os.NewSyscallError("fcntl", err)
	}
	p.file, p.epfd, p.readers = os.NewFile(uintptr(fd), "epoll"), fd, map[int32]func(){}
	if p.wait == nil {
		p.events = make([]unix.EpollEvent, 16)
		p.wait = p.epollWait // bound once: a method value per call would be an allocation
	}
	return nil
}

func (p *Poller) remove(c *Conn, key int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, in := p.readers[key]; !in {
		return // the set it was in is gone: its descriptor may be another file's by now
	}
	delete(p.readers, key)
	// Fails (and need not succeed) once c is closed: closing took it out of the set.
	c.rc.Control(func(fd uintptr) { unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) }) //nolint:errcheck
	if len(p.readers) == 0 {
		p.file.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // wakes the loop, which closes the set
	}
}

// loop waits for the sockets in file and calls their read functions, until the Poller
// is empty; then it closes file.
func (p *Poller) loop(file *os.File) {
	rc, err := file.SyscallConn()
	if err != nil {
		panic(err) // an os.File always has one
	}
	var ready []func()
	for {
		err := rc.Read(p.wait)
		p.mu.Lock()
		if err != nil { // the deadline remove set
			if len(p.readers) == 0 {
				p.file, p.readers, p.running = nil, nil, false
				p.mu.Unlock()
				file.Close()
				return
			}
			file.SetReadDeadline(time.Time{}) //nolint:errcheck // one was added since
			p.mu.Unlock()
			continue
		}
		ready = ready[:0]
		for _, e := range p.events[:p.n] {
			if read := p.readers[e.Fd]; read != nil {
				ready = append(ready, read)
			}
		}
		p.mu.Unlock()
		for _, read := range ready {
			read()
		}
	}
}

// epollWait is epoll_wait(2) without waiting (the netpoller waits): false when no socket
// is ready. It cannot fail on the set the Poller made, but would read as "none ready".
func (p *Poller) epollWait(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&p.events[0])), uintptr(len(p.events)), 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			n = 0
		}
		p.n = int(n)
		return n > 0
	}
}

package netproxy

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller is an epoll instance of the proxy's own, watching the sockets of
// relayed TCP connections and their listeners. Go's network poller
// watches the epoll descriptor itself (as an os.File, which is readable
// while events are pending), and one goroutine passes the events on to
// the goroutines that wait for them. So a connection's sockets never enter
// Go's poller: watching one costs a single raw epoll_ctl, closing it a
// single raw close(2), where an os.File or a net.Conn costs an fcntl, an
// epoll_ctl, a finalizer, getsockname and setsockopt calls, and a close
// through the scheduler's syscall state (see rawio.go for why that
// matters). The waiting itself stays with Go: goroutines block on
// channels, and the thread blocks in Go's own epoll_wait.
//
// Sockets are registered edge-triggered for reading and writing at once.
// A notification is a token in a channel with room for one, so none is
// lost between a read or send that found nothing to do and the wait that
// follows; a stale one costs one more try. Registering reports the state
// the socket is in already, so a first wait is as good as a first try.
type poller struct {
	epfd int
	file *os.File // epfd, watched by Go's poller
	done chan struct{}

	mu  sync.Mutex
	fds map[int32]*pollFD
	gen uint32 // tells a reused descriptor number from its predecessor
}

// pollFD is a socket in the poller.
type pollFD struct {
	fd  int
	gen uint32
	// r and w hold a token when the socket may have become readable or
	// writable (or hung up) since the last wait.
	r, w chan struct{}
	// more: the socket hung up, failed or got urgent data, so a short
	// read may not have drained it (see copySmall). It stays set.
	more atomic.Bool
}

// pollEvents are the events every socket is registered for.
const pollEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLPRI | unix.EPOLLET

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll instance: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("create epoll instance: %w", err)
	}
	p := &poller{
		epfd: epfd,
		file: os.NewFile(uintptr(epfd), "netproxy-epoll"),
		done: make(chan struct{}),
		fds:  map[int32]*pollFD{},
	}
	go p.run()
	return p, nil
}

// open adds fd to the poller. The caller closes it with close or reset,
// never otherwise.
func (p *poller) open(fd int) (*pollFD, error) {
	p.mu.Lock()
	p.gen++
	d := &pollFD{fd: fd, gen: p.gen, r: make(chan struct{}, 1), w: make(chan struct{}, 1)}
	p.fds[int32(fd)] = d
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(fd), Pad: int32(d.gen)}
	// unix.EpollCtl is a raw system call: it does not enter the
	// scheduler's syscall state (rawio.go says why that matters).
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(d)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return d, nil
}

// close removes d and closes its socket; closing takes it out of the
// epoll instance too. Nobody may use d afterwards.
func (p *poller) close(d *pollFD) {
	p.forget(d)
	rawClose(d.fd)
}

// reset is close with a TCP reset instead of a FIN (see rawReset).
func (p *poller) reset(d *pollFD) {
	p.forget(d)
	rawReset(d.fd)
}

func (p *poller) forget(d *pollFD) {
	p.mu.Lock()
	if p.fds[int32(d.fd)] == d {
		delete(p.fds, int32(d.fd))
	}
	p.mu.Unlock()
}

// stop ends the poller once nothing uses it any more.
func (p *poller) stop() {
	p.file.Close() // wakes run's wait with an error
	<-p.done
}

func (p *poller) run() {
	defer close(p.done)
	rc, err := p.file.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	// Read returns only when the file is closed: the function never
	// reports done, it drains the events and asks to wait for more.
	rc.Read(func(epfd uintptr) bool {
		for {
			n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&events[0])),
				uintptr(len(events)), 0, 0, 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 || n == 0 {
				return false
			}
			p.dispatch(events[:n])
			if int(n) < len(events) {
				return false
			}
		}
	})
}

func (p *poller) dispatch(events []unix.EpollEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range events {
		ev := &events[i]
		d := p.fds[ev.Fd]
		if d == nil || d.gen != uint32(ev.Pad) {
			continue // closed since: the event was for its predecessor
		}
		if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLPRI) != 0 {
			d.more.Store(true) // before the token, which the reader waits for
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLPRI) != 0 {
			notify(d.r)
		}
		if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			notify(d.w)
		}
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// waitRead blocks until the socket may have become readable since the
// last wait. Call it first, or after a read that drained the socket.
func (d *pollFD) waitRead() { <-d.r }

// waitWrite blocks until the socket may have become writable since the
// last wait. Call it after a send returned EAGAIN.
func (d *pollFD) waitWrite() { <-d.w }

// wake makes the current or next waits return, so that their callers
// look at the socket (or at their connection's state) again.
func (d *pollFD) wake() {
	notify(d.r)
	notify(d.w)
}

package netproxy

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sockets of relayed TCP connections, and their listeners, are
// handled with raw system calls (RawSyscall), which do not tell the Go
// scheduler about the call: none of them can block (every socket is
// non-blocking; waiting is done through the poller, see poller.go).
//
// Go's own calls (syscall.Syscall, and with them every net.Conn method)
// enter the scheduler's syscall state, and that costs a proxy more than
// the call itself:
//
//   - A send on loopback or a veth runs the receiver's whole TCP input
//     path inside the call, often for longer than sysmon's 20 µs tick;
//     sysmon then takes the P away from the "blocked" thread and hands
//     it to another one, a context switch per message.
//   - Every such call made while sysmon sleeps (because the process was
//     idle a moment before) wakes sysmon, which then polls every 20 µs
//     for a while (golang/go#18236). A proxy that goes idle between
//     connections woke it for nearly every connection: about 2.5 extra
//     context switches per connection, on the proxy's own core.
//
// With raw calls a connection costs about as many system calls and
// context switches as it does in haproxy.

// rawRead reads from a non-blocking socket.
func rawRead(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// rawSend sends on a non-blocking socket. MSG_NOSIGNAL: a peer that is
// gone gives EPIPE, never SIGPIPE.
func rawSend(fd int, b []byte) (int, syscall.Errno) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// rawSplice moves up to n bytes between a socket and a pipe without
// blocking on either.
func rawSplice(in, out, n int) (int, syscall.Errno) {
	for {
		m, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
			unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if e != unix.EINTR {
			return int(m), e
		}
	}
}

func rawShutdown(fd, how int) syscall.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return e
}

// rawClose closes fd. Its errors are not worth acting on: Linux releases
// the descriptor even when close reports one.
func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// rawReset closes a TCP socket with a reset instead of a FIN
// (SO_LINGER with a zero timeout), which tells a client at once that it
// will get no answer.
func rawReset(fd int) {
	l := unix.Linger{Onoff: 1, Linger: 0}
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER,
		uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
	rawClose(fd)
}

func rawSetsockoptInt(fd, level, opt, value int) syscall.Errno {
	v := int32(value)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&v)), 4, 0)
	return e
}

// rawSocket opens a non-blocking TCP socket for addresses like a (an
// IPv4-mapped IPv6 address counts as IPv4, as in package net).
func rawSocket(a netip.Addr) (int, syscall.Errno) {
	family := unix.AF_INET
	if a.Unmap().Is6() {
		family = unix.AF_INET6
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	return int(fd), e
}

// rawConnect starts or checks a connection to sa (see dialEndpoint).
func rawConnect(fd int, sa *sockaddr) syscall.Errno {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len))
		if e != unix.EINTR {
			return e
		}
	}
}

// rawAccept accepts a connection as a non-blocking socket and returns
// the client's address.
func rawAccept(fd int) (int, netip.AddrPort, syscall.Errno) {
	var sa sockaddr
	sa.len = uint32(unsafe.Sizeof(sa.raw))
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)),
		uintptr(unsafe.Pointer(&sa.len)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(nfd), sa.addrPort(), 0
}

// rawLocalAddr is the local address of a socket (getsockname).
func rawLocalAddr(fd int) (netip.AddrPort, syscall.Errno) {
	var sa sockaddr
	sa.len = uint32(unsafe.Sizeof(sa.raw))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)),
		uintptr(unsafe.Pointer(&sa.len)))
	if e != 0 {
		return netip.AddrPort{}, e
	}
	return sa.addrPort(), 0
}

// sockaddr is a socket address as the kernel takes and returns it.
type sockaddr struct {
	raw unix.RawSockaddrAny
	len uint32
}

func newSockaddr(ap netip.AddrPort) *sockaddr {
	sa := &sockaddr{}
	port := ap.Port()
	if a := ap.Addr().Unmap(); a.Is4() {
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		in.Family = unix.AF_INET
		in.Addr = a.As4()
		putPort(&in.Port, port)
		sa.len = unix.SizeofSockaddrInet4
	} else {
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.raw))
		in.Family = unix.AF_INET6
		in.Addr = a.As16()
		putPort(&in.Port, port)
		sa.len = unix.SizeofSockaddrInet6
	}
	return sa
}

func (sa *sockaddr) addrPort() netip.AddrPort {
	switch sa.raw.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), getPort(&in.Port))
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.raw))
		return netip.AddrPortFrom(netip.AddrFrom16(in.Addr).Unmap(), getPort(&in.Port))
	}
	return netip.AddrPort{}
}

// putPort and getPort convert between a port number and its network
// byte order in a sockaddr.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

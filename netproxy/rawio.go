package netproxy

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The relay's reads and writes on non-blocking sockets are made with
// RawSyscall, which does not tell the Go scheduler about the call. A send
// on loopback or a veth runs the receiver's whole TCP input path inside
// the call, often for longer than the runtime's 20 µs sysmon tick; with a
// plain Syscall, sysmon then keeps waking up (every 20 µs) to take the P
// away from the "blocked" thread and hand it over, which costs context
// switches on every message: on a proxy pinned to one CPU it measured
// 1.1-1.5 context switches per request/response, against about 0.5 with
// raw calls (haproxy: 0.5).
// These calls cannot block (the sockets are non-blocking and EAGAIN is
// handled by waiting through the poller), so hiding them is safe.

// rawRead reads from a non-blocking socket.
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// rawSendAll writes all of b to the socket behind rc, waiting through the
// poller when its buffer is full. MSG_NOSIGNAL: a peer that is gone gives
// EPIPE, never SIGPIPE.
func rawSendAll(rc syscall.RawConn, b []byte) error {
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
				unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				b = b[n:]
			case unix.EINTR:
			case unix.EAGAIN:
				return false // wait until writable
			default:
				serr = os.NewSyscallError("send", e)
				return true
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

// rawCloseWrite shuts down the writing side of c (a half-close that sends
// FIN), like (*net.TCPConn).CloseWrite but without entering the
// scheduler's syscall state, for the reason above: on loopback the FIN is
// processed inside the call.
func rawCloseWrite(c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if _, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0); e != 0 {
			serr = os.NewSyscallError("shutdown", e)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

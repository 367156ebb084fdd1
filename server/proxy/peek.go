package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketOf is the socket under a connection: a TLS connection's own
// (whose pending bytes are records), or nc itself.
func socketOf(nc net.Conn) net.Conn {
	if w, ok := nc.(interface{ NetConn() net.Conn }); ok {
		return w.NetConn()
	}
	return nc
}

// inputPending reports whether the peer has already sent bytes that wait
// unread in the socket's receive queue. It never blocks and consumes nothing
// (recv with MSG_PEEK|MSG_DONTWAIT). A conn without a file descriptor, an
// error or an orderly EOF all read as "nothing pending".
func inputPending(nc net.Conn) bool {
	sc, ok := socketOf(nc).(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var rerr error
	var b [1]byte
	// Control, not Read: Read would honour an expired read deadline and wait
	// for readiness; a non-blocking peek needs neither.
	if err := raw.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	return rerr == nil && n > 0
}

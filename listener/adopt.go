package listener

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// adopt turns an inherited socket into a net.Listener of spec's network.
// The file is always closed: net.FileListener holds its own duplicate.
// The kernel socket, with its accept queue, is the very one the previous
// process listened on.
func adopt(f *os.File, spec Spec) (net.Listener, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("inspect fd: %w", err)
	}
	acc, serr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) {
		acc, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	}); err != nil {
		return nil, fmt.Errorf("inspect fd: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("fd is not a socket: %w", serr)
	}
	if acc != 1 {
		return nil, fmt.Errorf("fd is not a listening socket")
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("file listener: %w", err)
	}
	switch l := ln.(type) {
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		if canonNetwork(spec.Network) != "unix" {
			l.Close()
			return nil, fmt.Errorf("fd is a unix socket, want %s", spec.Network)
		}
	case *net.TCPListener:
		if canonNetwork(spec.Network) == "unix" {
			l.Close()
			return nil, fmt.Errorf("fd is a tcp socket, want unix")
		}
		if want, got := portOf(spec.Address), l.Addr().(*net.TCPAddr).Port; want != got {
			l.Close()
			return nil, fmt.Errorf("fd is bound to port %d, manifest says %d", got, want)
		}
	default:
		ln.Close()
		return nil, fmt.Errorf("unsupported listener type %T", ln)
	}
	return ln, nil
}

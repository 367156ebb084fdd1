package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Export calls send with the identity and the descriptor of every open
// listener, in the order they were opened, for handing to a successor
// process. The descriptors are the listeners' own, read under
// SyscallConn().Control, which keeps each one from being closed until send
// returns: no duplicate is made, so an export needs no spare descriptor even
// in a process at its file limit, and no listener is put in blocking mode
// (as File() or Fd() would do, after which Close no longer wakes Accept).
// send must not keep the descriptors.
func (s *Set) Export(send func(specs []Spec, fds []int) error) error {
	s.mu.Lock()
	ls := make([]*Listener, 0, len(s.open))
	for _, l := range s.open {
		if !l.Closed() {
			ls = append(ls, l)
		}
	}
	s.mu.Unlock()
	return withFDs(ls, nil, nil, send)
}

// withFDs holds each listener's descriptor in a nested Control and calls send
// with all of them. A listener closed meanwhile is left out.
func withFDs(ls []*Listener, specs []Spec, fds []int, send func([]Spec, []int) error) error {
	if len(ls) == 0 {
		return send(specs, fds)
	}
	l := ls[0]
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return fmt.Errorf("listener: export %s: %T has no descriptor", l.Spec, l.Listener)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("listener: export %s: %w", l.Spec, err)
	}
	var inner error
	err = rc.Control(func(fd uintptr) {
		inner = withFDs(ls[1:], append(specs, l.Spec), append(fds, int(fd)), send)
	})
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return withFDs(ls[1:], specs, fds, send)
	}
	if err != nil {
		return fmt.Errorf("listener: export %s: %w", l.Spec, err)
	}
	return inner
}

// Dup returns a close-on-exec duplicate of a socket's descriptor, a listener's
// or a connection's: the one way this project duplicates a descriptor. It
// works under SyscallConn().Control with F_DUPFD_CLOEXEC, never File(), so
// the shared socket stays in non-blocking mode; the returned file comes from
// os.NewFile on that non-blocking descriptor, so its Fd() is harmless.
func Dup(c syscall.Conn, name string) (*os.File, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", name, derr)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Export duplicates the fd of every open listener, in the order they were
// opened, for handing to a successor process. Each Spec carries the bound
// address. The caller owns the files and must close them.
//
// The duplicate is made with F_DUPFD_CLOEXEC under SyscallConn().Control,
// never with File(): a File() of a socket reports blocking mode from Fd(),
// and the blocking flag lives on the shared open file description, after
// which Close no longer wakes a pending Accept. The files returned here come
// from os.NewFile on a non-blocking descriptor, so their Fd() is harmless.
func (s *Set) Export() ([]Spec, []*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		specs []Spec
		files []*os.File
	)
	for _, l := range s.open {
		if l.Closed() {
			continue
		}
		f, err := dupListener(l)
		if errors.Is(err, net.ErrClosed) {
			continue
		}
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, fmt.Errorf("listener: export %s: %w", l.Spec, err)
		}
		specs = append(specs, l.Spec)
		files = append(files, f)
	}
	return specs, files, nil
}

func dupListener(l *Listener) (*os.File, error) {
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("listener type %T has no fd", l.Listener)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	return os.NewFile(uintptr(nfd), l.Spec.String()), nil
}

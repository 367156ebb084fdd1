//go:build race

package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// With the race detector, the exchange's reads and writes go through
// unix.Read and unix.Write, which tell the detector what bytes the kernel
// wrote and read: a pooled buffer reused while another goroutine still
// touches it is then reported. (rawio_norace.go has the raw syscalls.)

func sysRead(fd int, b []byte) (int, error) { return checked(unix.Read(fd, b)) }

func sysWrite(fd int, b []byte) (int, error) { return checked(unix.Write(fd, b)) }

// checked returns 0 and the Errno on failure, as the raw syscalls do.
func checked(n int, err error) (int, error) {
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return 0, errno
		}
		return 0, err
	}
	return n, nil
}

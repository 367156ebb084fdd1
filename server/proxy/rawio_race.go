//go:build race

package proxy

import (
	"runtime"
	"unsafe"
)

// With the race detector, the exchange's reads and writes make the same
// syscalls and tell the detector what bytes the kernel wrote and read, as
// unix.Read and unix.Write do: a pooled buffer reused while another
// goroutine still touches it is then reported. A write releases and a
// successful read acquires raceIOSync, so that bytes passed through a
// socket between two goroutines of this process order what each did before
// and after, as a channel would.

// raceIOSync is only an address for the detector's release and acquire; it
// is never read or written.
var raceIOSync byte

func sysRead(fd int, b []byte) (int, error) {
	n, err := recvRaw(fd, b)
	if n > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&b[0]), n)
	}
	if err == nil {
		runtime.RaceAcquire(unsafe.Pointer(&raceIOSync))
	}
	return n, err
}

func sysWrite(fd int, b []byte) (int, error) {
	if len(b) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&b[0]), len(b))
	}
	runtime.RaceReleaseMerge(unsafe.Pointer(&raceIOSync))
	return sendRaw(fd, b)
}

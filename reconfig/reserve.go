package reconfig

import (
	"sync"

	"golang.org/x/sys/unix"
)

// fdReserve holds spare descriptors (of /dev/null) for a process that runs
// out of them: releasing one frees a slot for the one thing that must not
// fail — taking an upgrade request — and refill takes it back when the slot
// is free again.
type fdReserve struct {
	mu   sync.Mutex
	want int
	fds  []int
}

func newFDReserve(n int) *fdReserve {
	r := &fdReserve{want: n}
	r.refill()
	return r
}

// release closes one spare descriptor, if any is left; false when none is.
func (r *fdReserve) release() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fds) == 0 {
		return false
	}
	unix.Close(r.fds[len(r.fds)-1])
	r.fds = r.fds[:len(r.fds)-1]
	return true
}

// refill opens spares up to the wanted number, as far as the limit allows.
func (r *fdReserve) refill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.fds) < r.want {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		r.fds = append(r.fds, fd)
	}
}

func (r *fdReserve) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds, r.want = nil, 0
}

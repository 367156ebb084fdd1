package envoy

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestSetParentDeathSignal(t *testing.T) {
	runtime.LockOSThread() // the setting belongs to this thread; undo it on the same one
	defer runtime.UnlockOSThread()
	defer func() { _ = unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0) }()

	if err := SetParentDeathSignal(os.Getppid()); err != nil {
		t.Fatal(err)
	}
	var sig int32
	if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if syscall.Signal(sig) != syscall.SIGTERM {
		t.Fatalf("parent death signal %d, want SIGTERM", sig)
	}
	if err := SetParentDeathSignal(os.Getppid() + 100000); !errors.Is(err, ErrParentGone) {
		t.Fatalf("a changed parent pid gave %v, want ErrParentGone", err)
	}
}

package envoy

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrParentGone: the process that started us had already died when we asked
// to be signalled on its death.
var ErrParentGone = errors.New("the launching process is already gone")

// SetParentDeathSignal asks Linux to send SIGTERM to this process when the
// process that launched it (the hot-restarter, or whatever started us) dies,
// as Envoy does: a hot-restarted process never outlives its launcher.
//
// Caveats: Linux ties the setting to the calling thread and fires it when the
// launcher's thread that forked us exits. Call it early on the main thread: in
// an init function of package main (the runtime runs init on the main thread),
// or in main after runtime.LockOSThread, never on a goroutine that later
// exits locked to its thread. wantPPID is the parent pid seen at startup
// (os.Getppid() first thing in main); if it already changed, the launcher died
// before the setting took effect and ErrParentGone is returned. 0 skips that check.
// For processes we launch ourselves, set exec.Cmd.SysProcAttr.Pdeathsig instead.
func SetParentDeathSignal(wantPPID int) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
		return fmt.Errorf("envoy: prctl(PR_SET_PDEATHSIG): %w", err)
	}
	if wantPPID > 0 && os.Getppid() != wantPPID {
		return fmt.Errorf("envoy: parent pid is %d, was %d: %w", os.Getppid(), wantPPID, ErrParentGone)
	}
	return nil
}

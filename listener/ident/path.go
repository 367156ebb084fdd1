package ident

import (
	"os"
	"syscall"
)

// PathID identifies the file at a path: device, inode and change time
// (inode numbers alone are reused at once). A process that bound a unix
// socket keeps its PathID, so that it never removes a path that someone
// else has bound since.
type PathID struct {
	dev, ino   uint64
	ctimeNanos int64
}

// StatPath returns the PathID of the file at p (not following a symlink),
// false if there is none.
func StatPath(p string) (PathID, bool) {
	fi, err := os.Lstat(p)
	if err != nil {
		return PathID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return PathID{}, false
	}
	return PathID{dev: uint64(st.Dev), ino: st.Ino, ctimeNanos: st.Ctim.Nano()}, true
}

// Package wire is what both handoff styles (the MOSN-style reconfig.sock and
// the Envoy-style epoch sockets) share below their messages: one framed
// SCM_RIGHTS codec, one peer-credential check and the liveness checks: of a
// process by pid (ProcessAlive), and of a handoff peer by its connection
// (PeerClosed), which holds across PID namespaces where the peer's pid
// reads 0 (PIDLabel names such a peer in logs by the pid it reports).
//
// # Frames
//
//	magic (4) | type (1) | flags (1) | payload length, big-endian (4) | payload
//
// A Protocol names the magic and, per frame type, the largest payload and the
// most descriptors a frame of that type may carry; a header announcing more is
// refused before anything is allocated, and the error names the type and both
// sizes. Flag bit 0 (FlagOptional) lets a reader skip a type it does not know:
// its payload is read and discarded in small chunks (never held whole) and its
// descriptors are closed. An unknown type without the flag is an error.
//
// Descriptors ride on a frame's first bytes: at most 253 (SCM_MAX_FD) per
// sendmsg, one payload byte per batch, so any number can follow one frame.
// The reader reads exactly one frame's bytes at a time, always with room for a
// full batch of control data, so descriptors never attach to the wrong frame.
// MSG_CTRUNC, bad magic, an oversize length, a truncated frame or descriptors
// on a type that carries none are errors naming what is wrong, and every
// descriptor received is closed on every error path. Received descriptors are
// close-on-exec (MSG_CMSG_CLOEXEC, made sure of).
//
// Descriptors are sent by number, read under SyscallConn().Control: the
// sender keeps them open until the write returns and never calls Fd(), which
// would put a shared socket in blocking mode.
package wire

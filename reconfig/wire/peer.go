package wire

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// AllowPeer decides whether a peer may take part in a handoff: the same uid
// as ours, or root (which could take the sockets anyway). A process running
// as root refuses every other uid: the 0700 directory (or the socket's file
// mode) is the first guard, this check the second, and the only one for
// abstract sockets.
func AllowPeer(ourUID, peerUID uint32) bool {
	return peerUID == ourUID || peerUID == 0
}

// PeerCred returns the pid and uid of the process at the other end of c, as
// the kernel recorded them at connect or listen time (SO_PEERCRED).
func PeerCred(c syscall.Conn) (pid int, uid uint32, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("peer credentials: %w", cerr)
	}
	return int(cred.Pid), cred.Uid, nil
}

// CheckPeer returns the peer's pid, or an error naming its uid when AllowPeer
// refuses it.
func CheckPeer(c syscall.Conn, ourUID uint32) (int, error) {
	pid, uid, err := PeerCred(c)
	if err != nil {
		return 0, err
	}
	if !AllowPeer(ourUID, uid) {
		return pid, fmt.Errorf("peer pid %d runs as uid %d, we run as uid %d: refused", pid, uid, ourUID)
	}
	return pid, nil
}

// ProcessAlive reports whether pid names a running process, ours or not
// (EPERM still means it exists). A zombie, dead but not yet reaped, counts
// as gone: it holds no socket and serves nothing.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: kill(0) is all we know
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return !ok || !strings.HasPrefix(rest, "Z")
}

// PeerClosed reports whether the process at the other end of c has closed
// its end — it exited, or gave up on us — as the connection itself tells:
// a peek that finds the end of the stream or a reset. A peer that is alive
// but silent, or one that has sent something not yet read, is not closed.
// It is the liveness check for a handoff peer that works across PID
// namespaces, where the peer's pid means nothing here (ProcessAlive).
func PeerClosed(c syscall.Conn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	if cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = (err == nil && n == 0) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
	}); cerr != nil {
		// Closed here: nothing more can be learnt from it.
		return false
	}
	return closed
}

// PIDLabel is how a handoff peer's pid is logged: the pid this process sees
// (SO_PEERCRED), or, for a peer the kernel reports as pid 0 — one in another
// PID namespace, such as another container of a pod — the pid the peer
// reports itself, marked as such, since that number means something only
// inside its own namespace. With neither known it is 0.
func PIDLabel(seen, reported int) any {
	if seen != 0 || reported <= 0 {
		return seen
	}
	return fmt.Sprintf("%d (in another PID namespace)", reported)
}

// RawFD returns c's descriptor without changing its blocking mode (unlike
// Fd). It stays valid while c is open.
func RawFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Bound shortens a string a peer supplied (a reason, a message, a name) to at
// most n bytes, on a rune boundary, saying how long it was: a peer cannot
// make us log or keep more than that.
func Bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(s))
}

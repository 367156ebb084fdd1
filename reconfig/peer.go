package reconfig

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// allowPeer decides whether a peer may take part in a handoff: the same uid
// as ours, or root (which could take the sockets anyway). A process running
// as root refuses every other uid: the 0700 uds_dir is the first guard, this
// check the second, for when the directory's mode is wrong.
func allowPeer(ourUID, peerUID uint32) bool {
	return peerUID == ourUID || peerUID == 0
}

// peerCred returns the pid and uid of the process at the other end of c, as
// the kernel recorded them at connect or listen time (SO_PEERCRED).
func peerCred(c *net.UnixConn) (pid int, uid uint32, err error) {
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

// checkPeer returns the peer's pid, or an error naming its uid when allowPeer refuses it.
func checkPeer(c *net.UnixConn, ourUID uint32) (int, error) {
	pid, uid, err := peerCred(c)
	if err != nil {
		return 0, err
	}
	if !allowPeer(ourUID, uid) {
		return pid, fmt.Errorf("peer pid %d runs as uid %d, we run as uid %d: refused", pid, uid, ourUID)
	}
	return pid, nil
}

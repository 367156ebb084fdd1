package envoy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/reconfig/wire"
)

// Role names one of the two sockets each process binds.
type Role string

const (
	// RoleParent is the listening socket on which a process serves its child.
	RoleParent Role = "parent"
	// RoleChild is the socket from which a process talks to its parent.
	RoleChild Role = "child"
)

// maxProcesses is how many epochs may live at once; socket ids wrap at it.
const maxProcesses = 3

// maxSocketName fits sun_path (108 bytes) with room for the terminating NUL.
const maxSocketName = 107

// ErrSocketInUse: another live process holds an epoch socket name.
var ErrSocketInUse = errors.New("hot restart socket is in use")

// SocketName is the epoch socket name {path}_{role}_{base_id*10 + epoch%3}.
// A path starting with "@" names a socket in Linux's abstract namespace.
func SocketName(path string, role Role, baseID, epoch int) string {
	return path + "_" + string(role) + "_" + strconv.Itoa(baseID*10+epoch%maxProcesses)
}

func isAbstract(name string) bool { return strings.HasPrefix(name, "@") }

func inUseError(name string, baseID int) error {
	return fmt.Errorf("envoy: socket %s is held by another process (base id %d): "+
		"run each instance with its own --base-id, or use --use-dynamic-base-id: %w", name, baseID, ErrSocketInUse)
}

// listenEpochSocket binds and listens on the parent-role socket. A file socket
// whose path exists is probed: if something accepts there the name is in use,
// otherwise the file is stale and replaced. File sockets get mode; abstract
// names have no file and no mode (peer credentials guard them instead).
func listenEpochSocket(name string, mode os.FileMode, baseID int) (*net.UnixListener, error) {
	if !isAbstract(name) {
		if err := clearStaleSocket(name, baseID); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, inUseError(name, baseID)
		}
		return nil, fmt.Errorf("envoy: listen on %s: %w", name, err)
	}
	if !isAbstract(name) {
		if err := os.Chmod(name, mode); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("envoy: chmod %s to %o: %w", name, mode, err)
		}
	}
	return ln, nil
}

// clearStaleSocket removes a socket file that nobody listens on.
func clearStaleSocket(name string, baseID int) error {
	if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c, err := net.DialTimeout("unix", name, time.Second)
	if err == nil {
		_ = c.Close()
		return inUseError(name, baseID)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("envoy: probe %s: %w", name, err)
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("envoy: remove stale socket %s: %w", name, err)
	}
	return nil
}

// bindChildSocket makes the child-role socket: a stream socket bound to name,
// not yet connected. It is bound after the parent-role socket of the same id,
// so a leftover file of that name can only be stale and is removed.
func bindChildSocket(name string, mode os.FileMode, baseID int) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("envoy: socket for %s: %w", name, err)
	}
	if !isAbstract(name) {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = unix.Close(fd)
			return -1, fmt.Errorf("envoy: remove stale socket %s: %w", name, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return -1, inUseError(name, baseID)
		}
		return -1, fmt.Errorf("envoy: bind %s: %w", name, err)
	}
	if !isAbstract(name) {
		if err := os.Chmod(name, mode); err != nil {
			_ = unix.Close(fd)
			_ = os.Remove(name)
			return -1, fmt.Errorf("envoy: chmod %s to %o: %w", name, mode, err)
		}
	}
	return fd, nil
}

// connectChildSocket connects the bound child socket fd to the parent's
// listening socket, retrying every retry while nobody listens there yet,
// until ctx ends. On success the fd belongs to the returned conn.
func connectChildSocket(ctx context.Context, fd int, parent string, retry time.Duration) (*net.UnixConn, error) {
	sa := &unix.SockaddrUnix{Name: parent}
	for {
		err := unix.Connect(fd, sa)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EAGAIN) {
			return nil, fmt.Errorf("envoy: connect to parent %s: %w", parent, err)
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("envoy: connect to parent %s: no parent process answers (%v): %w", parent, err, ctx.Err())
		case <-t.C:
		}
	}
	f := os.NewFile(uintptr(fd), parent)
	c, err := net.FileConn(f) // dups fd
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("envoy: wrap connection to %s: %w", parent, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("envoy: connection to %s is %T, not a unix socket", parent, c)
	}
	return uc, nil
}

// checkPeer refuses a peer of another user (root aside) and returns its pid.
func checkPeer(c syscall.Conn, selfUID uint32) (int, error) {
	pid, err := wire.CheckPeer(c, selfUID)
	if err != nil {
		return pid, fmt.Errorf("envoy: %w", err)
	}
	return pid, nil
}

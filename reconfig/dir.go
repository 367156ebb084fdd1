package reconfig

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Names of the files in uds_dir.
const (
	ReconfigSock = "reconfig.sock" // the running process accepts upgrade requests here
	ListenSock   = "listen.sock"   // the upgrading process receives the manifest here
	LockFile     = "upgrade.lock"  // flock held by the process that is starting or upgrading
)

// maxSockPath is the room in sockaddr_un.sun_path, less the trailing NUL.
const maxSockPath = 107

// ensureDir creates dir 0700, narrows an existing one of ours to 0700, and
// refuses one owned by another uid.
func ensureDir(dir string, euid uint32) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("reconfig: create uds_dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("reconfig: uds_dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("reconfig: uds_dir %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != euid {
		return fmt.Errorf("reconfig: uds_dir %s is owned by uid %d, we run as uid %d", dir, st.Uid, euid)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("reconfig: chmod uds_dir 0700: %w", err)
		}
	}
	return nil
}

// lockDir takes the upgrade lock without waiting. A lock held elsewhere is
// ErrUpgradeInProgress. Closing the returned file releases the lock; the
// kernel releases it when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("reconfig: open upgrade lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrUpgradeInProgress
		}
		return nil, fmt.Errorf("reconfig: take upgrade lock: %w", err)
	}
	return f, nil
}

// bindSocket listens on dir/name with mode 0600: it binds a temporary name,
// chmods it and renames it into place, so the socket is never reachable
// with a wider mode and an existing socket at name is replaced atomically.
// The listener never unlinks its path on Close.
func bindSocket(dir, name string) (*net.UnixListener, error) {
	final := filepath.Join(dir, name)
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("reconfig: bind %s: %w", name, err)
	}
	tmp := filepath.Join(dir, "."+name+"."+hex.EncodeToString(rnd[:]))
	if len(tmp) > maxSockPath {
		return nil, fmt.Errorf("reconfig: bind %s: path %s is longer than the %d bytes a unix socket allows; use a shorter uds_dir", name, tmp, maxSockPath)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("reconfig: bind %s: %w", name, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(step string, err error) (*net.UnixListener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("reconfig: bind %s: %s: %w", name, step, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail("chmod 0600", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail("rename into place", err)
	}
	return ln, nil
}

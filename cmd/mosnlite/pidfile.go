package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// pidFile is MOSN's pid file: "PID\n", mode 0644, its directory created.
// Every generation writes it once it serves, so that it names the process
// serving now; only a process that stops for good removes it, and only if
// it still names that process — an old process that handed over (and is
// told to stop later, as an Envoy parent is) leaves its successor's file.
// Writes and the removal's check hold an flock on the directory, so that a
// successor's write cannot fall between an old process's check and unlink.
type pidFile struct {
	path string
}

// write replaces the file with pid, atomically (a temp file renamed over it).
func (p pidFile) write(pid int) error {
	if p.path == "" {
		return nil
	}
	dir := filepath.Dir(p.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	defer unlock()
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(p.path)+".*")
	if err != nil {
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err := tmp.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	if err := os.Rename(tmp.Name(), p.path); err != nil {
		return fmt.Errorf("pid file %s: %w", p.path, err)
	}
	return nil
}

// removeIfOwn removes the file if it names pid. It reports whether it did.
func (p pidFile) removeIfOwn(pid int) (bool, error) {
	if p.path == "" {
		return false, nil
	}
	unlock, err := lockDir(filepath.Dir(p.path))
	if err != nil {
		return false, fmt.Errorf("pid file %s: %w", p.path, err)
	}
	defer unlock()
	b, err := os.ReadFile(p.path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pid file %s: %w", p.path, err)
	}
	if string(bytes.TrimSpace(b)) != strconv.Itoa(pid) {
		return false, nil
	}
	if err := os.Remove(p.path); err != nil {
		return false, fmt.Errorf("pid file %s: %w", p.path, err)
	}
	return true, nil
}

// lockDir takes an exclusive flock on dir until the returned func runs.
func lockDir(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { _ = unix.Close(fd) }, nil
}

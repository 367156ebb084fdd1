package envoy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// shortDir is a temp dir with a short path: socket names must fit in 107 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

var abstractSeq atomic.Int64

// abstractPath is an abstract socket path unique to this test process.
func abstractPath() string {
	return fmt.Sprintf("@mosnlite_test_%d_%d", os.Getpid(), abstractSeq.Add(1))
}

func TestSocketName(t *testing.T) {
	cases := []struct {
		path        string
		role        Role
		base, epoch int
		want        string
	}{
		{"@mosnlite_domain_socket", RoleParent, 0, 0, "@mosnlite_domain_socket_parent_0"},
		{"@mosnlite_domain_socket", RoleChild, 0, 1, "@mosnlite_domain_socket_child_1"},
		{"@s", RoleParent, 0, 3, "@s_parent_0"},
		{"@s", RoleChild, 0, 5, "@s_child_2"},
		{"/run/hr", RoleParent, 7, 4, "/run/hr_parent_71"},
		{"/run/hr", RoleChild, 12, 2, "/run/hr_child_122"},
	}
	for _, tc := range cases {
		if got := SocketName(tc.path, tc.role, tc.base, tc.epoch); got != tc.want {
			t.Errorf("SocketName(%q, %s, %d, %d) = %q, want %q", tc.path, tc.role, tc.base, tc.epoch, got, tc.want)
		}
	}
}

func TestAbstractSocketHasNoFileAndDetectsUse(t *testing.T) {
	path := abstractPath()
	name, cname := SocketName(path, RoleParent, 1, 0), SocketName(path, RoleChild, 1, 0)
	ln, err := listenEpochSocket(name, 0o600, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := os.Lstat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an abstract name created a file %q: %v", name, err)
	}
	// Reachable by its abstract name.
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatalf("dial abstract socket: %v", err)
	}
	_ = c.Close()
	_, err = listenEpochSocket(name, 0o600, 1)
	if !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), "--base-id") {
		t.Fatalf("second bind: %v, want ErrSocketInUse suggesting --base-id", err)
	}
	fd, err := bindChildSocket(cname, 0o600, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_, err = bindChildSocket(cname, 0o600, 1)
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second child bind: %v", err)
	}
}

func TestFileSocketModeStaleAndInUse(t *testing.T) {
	path := filepath.Join(shortDir(t), "hr")
	name := SocketName(path, RoleParent, 0, 0)
	// A stale file (nobody listening) is replaced.
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := listenEpochSocket(name, 0o644, 0)
	if err != nil {
		t.Fatalf("stale file not replaced: %v", err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o644 {
		t.Fatalf("socket file mode %v, want a socket with 0644", fi.Mode())
	}
	// A live one is in use, and stays.
	if _, err := listenEpochSocket(name, 0o600, 0); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("live socket: %v", err)
	}
	if _, err := os.Stat(name); err != nil {
		t.Fatalf("the in-use check removed the live socket: %v", err)
	}
	_ = ln.Close()
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("closing did not remove the socket file: %v", err)
	}
	cname := SocketName(path, RoleChild, 0, 0)
	fd, err := bindChildSocket(cname, 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if fi, err := os.Stat(cname); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("child socket file: %v %v", fi, err)
	}
}

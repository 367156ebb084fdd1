package reconfig

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	// Start the network poller before any test counts fds.
	if c, err := net.Dial("unix", "/nonexistent"); err == nil {
		c.Close()
	}
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	os.Exit(m.Run())
}

func TestEnsureDir(t *testing.T) {
	root := shortDir(t)
	d := filepath.Join(root, "a", "b")
	if err := ensureDir(d, uint32(os.Geteuid())); err != nil {
		t.Fatal(err)
	}
	assertMode(t, d, 0o700)
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := ensureDir(d, uint32(os.Geteuid())); err != nil {
		t.Fatal(err)
	}
	assertMode(t, d, 0o700)
	if err := ensureDir(d, uint32(os.Geteuid())+1); err == nil || !strings.Contains(err.Error(), "owned by uid") {
		t.Fatalf("ensureDir of another uid's dir: %v", err)
	}
	f := filepath.Join(root, "file")
	os.WriteFile(f, nil, 0o600)
	if err := ensureDir(f, uint32(os.Geteuid())); err == nil {
		t.Fatal("ensureDir on a file succeeded")
	}
}

func TestBindSocketMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := shortDir(t)
	ln, err := bindSocket(dir, ListenSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	assertMode(t, filepath.Join(dir, ListenSock), 0o600)
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary names left: %v", ents)
	}
	// Binding again replaces the path atomically; the first socket stays open.
	ln2, err := bindSocket(dir, ListenSock)
	if err != nil {
		t.Fatal(err)
	}
	ln2.Close()
	// No listener unlinks its path on close.
	assertSocketAt(t, filepath.Join(dir, ListenSock))

	long := filepath.Join(dir, strings.Repeat("x", 100))
	os.Mkdir(long, 0o700)
	if _, err := bindSocket(long, ReconfigSock); err == nil || !strings.Contains(err.Error(), "shorter uds_dir") {
		t.Fatalf("bind with a long path: %v", err)
	}
}

func TestLockDir(t *testing.T) {
	dir := shortDir(t)
	l, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(dir); !errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("second lock: %v", err)
	}
	l.Close()
	l2, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Close()
}

package reconfig

import (
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

const testWait = 5 * time.Second

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "rc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testLog() (*logrus.Entry, *test.Hook) {
	l, hook := test.NewNullLogger()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l).WithField("component", "reconfig"), hook
}

func quietLog() *logrus.Entry {
	l, _ := testLog()
	return l
}

// fdCount is the number of fds this process has open.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFDs waits, bounded, until the process has no more fds open than base.
func waitFDs(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		n := fdCount(t)
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fd leak: %d open, want at most %d", n, base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unixPair returns two connected *net.UnixConn.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conv(fds[0]), conv(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// devNullFDs opens n fds to pass around.
func devNullFDs(t *testing.T, n int) []int {
	t.Helper()
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	return fds
}

// tcpListener returns a listener on 127.0.0.1 and a way to dup its fd the
// way listener.Set.Export does.
func tcpListener(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// dupFile duplicates a socket's fd (a listener's or a connection's) the way
// the proxy and listener.Set.Export do: F_DUPFD_CLOEXEC, never File().
func dupFile(t *testing.T, sc syscall.Conn) *os.File {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	return os.NewFile(uintptr(nfd), "dup")
}

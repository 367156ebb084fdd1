package systemd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// managerSocket plays the service manager: a datagram socket with
// SO_PASSCRED, as systemd's, that records each message with its sender.
type managerSocket struct {
	t    *testing.T
	conn *net.UnixConn
	addr string // as NOTIFY_SOCKET would name it
}

type received struct {
	pid    int32
	fields []string
	fds    []int
}

func newManagerSocket(t *testing.T, abstract bool) *managerSocket {
	t.Helper()
	var name string
	if abstract {
		name = fmt.Sprintf("@mosnlite-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
	} else {
		name = filepath.Join(t.TempDir(), "notify.sock")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	t.Cleanup(func() { conn.Close() })
	return &managerSocket{t: t, conn: conn, addr: name}
}

// next reads one message, failing the test after timeout.
func (m *managerSocket) next(timeout time.Duration) received {
	m.t.Helper()
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, 1024)
	m.conn.SetReadDeadline(time.Now().Add(timeout))
	n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		m.t.Fatalf("manager socket: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		m.t.Fatal(err)
	}
	var r received
	for _, cm := range msgs {
		if cred, err := unix.ParseUnixCredentials(&cm); err == nil {
			r.pid = cred.Pid
			continue
		}
		if fds, err := unix.ParseUnixRights(&cm); err == nil {
			r.fds = append(r.fds, fds...)
		}
	}
	if !strings.HasSuffix(string(buf[:n]), "\n") {
		m.t.Fatalf("message %q does not end with a newline", buf[:n])
	}
	r.fields = strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n")
	return r
}

// none checks that no message arrives within d.
func (m *managerSocket) none(d time.Duration) {
	m.t.Helper()
	buf := make([]byte, MaxMessage+1)
	m.conn.SetReadDeadline(time.Now().Add(d))
	if n, _, err := m.conn.ReadFromUnix(buf); err == nil {
		m.t.Fatalf("unexpected message %q", buf[:n])
	}
}

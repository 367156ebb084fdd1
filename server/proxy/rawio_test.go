package proxy

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair returns both ends of a connection on network ("tcp" or
// "unix"), closed when the test ends.
func socketPair(tb testing.TB, network string) (a, b net.Conn) {
	tb.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = tb.TempDir() + "/s"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	a, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	b, err = ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return a, b
}

// withFD runs f with c's file descriptor.
func withFD(tb testing.TB, c net.Conn, f func(fd int)) {
	tb.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		tb.Fatal(err)
	}
}

// readSome reads from a non-blocking fd until something or an error other
// than EAGAIN comes, for up to a second.
func readSome(fd int, b []byte) (int, error) {
	for end := time.Now().Add(time.Second); ; {
		n, err := sysRead(fd, b)
		if err != unix.EAGAIN || time.Now().After(end) {
			return n, err
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSysReadWrite(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			a, b := socketPair(t, network)
			buf := make([]byte, 16)
			withFD(t, b, func(fd int) {
				if n, err := sysRead(fd, buf); n != 0 || err != unix.EAGAIN {
					t.Errorf("read of an empty socket = %d, %v; want 0, EAGAIN", n, err)
				}
			})
			withFD(t, a, func(fd int) {
				if n, err := sysWrite(fd, []byte("hello")); n != 5 || err != nil {
					t.Errorf("write = %d, %v; want 5, nil", n, err)
				}
				if n, err := sysWrite(fd, nil); n != 0 || err != nil {
					t.Errorf("empty write = %d, %v; want 0, nil", n, err)
				}
			})
			withFD(t, b, func(fd int) {
				n, err := readSome(fd, buf)
				if err != nil || string(buf[:n]) != "hello" {
					t.Errorf("read = %q, %v; want \"hello\", nil", buf[:n], err)
				}
			})
			a.Close()
			withFD(t, b, func(fd int) {
				if n, err := readSome(fd, buf); n != 0 || err != nil {
					t.Errorf("read after the peer closed = %d, %v; want 0, nil (end of stream)", n, err)
				}
			})
		})
	}
}

// A write to a peer that is gone returns an error and raises no SIGPIPE
// (which Go ignores on sockets, but which costs a signal delivery, and
// which a program that asked for SIGPIPE would receive). SIGPIPE is
// process-wide, and another test's leftover connection could raise one:
// the check runs in a child process of its own.
func TestSysWriteToAResetPeerRaisesNoSIGPIPE(t *testing.T) {
	if os.Getenv(sigpipeChildEnv) != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSysWriteToAResetPeerRaisesNoSIGPIPE$", "-test.count=1")
		cmd.Env = append(os.Environ(), sigpipeChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PASS") {
			t.Fatalf("the child process: %v\n%s", err, out)
		}
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGPIPE)
	defer signal.Stop(sigs)

	a, b := socketPair(t, "tcp")
	// The peer closes with unread bytes: the kernel resets the connection.
	withFD(t, a, func(fd int) {
		if _, err := sysWrite(fd, []byte("unread")); err != nil {
			t.Fatal(err)
		}
	})
	withFD(t, b, func(fd int) {
		for i := 0; i < 1000; i++ {
			if n, _ := unix.IoctlGetInt(fd, unix.SIOCINQ); n > 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatal("the bytes never arrived")
	})
	b.(*net.TCPConn).SetLinger(0)
	b.Close()
	// The first write after the reset may return ECONNRESET; the ones
	// after it return EPIPE, which is when the kernel would raise SIGPIPE.
	var err error
	withFD(t, a, func(fd int) {
		for i := 0; i < 100 && !errors.Is(err, unix.EPIPE); i++ {
			_, err = sysWrite(fd, []byte("more"))
			switch {
			case err == nil:
				time.Sleep(time.Millisecond)
			case !errors.Is(err, unix.ECONNRESET) && !errors.Is(err, unix.EPIPE):
				t.Fatalf("write to a reset peer: %v; want ECONNRESET or EPIPE", err)
			}
		}
	})
	if !errors.Is(err, unix.EPIPE) {
		t.Fatalf("writes to a reset peer ended with %v; want EPIPE", err)
	}
	select {
	case <-sigs:
		t.Fatal("the write raised SIGPIPE")
	case <-time.After(50 * time.Millisecond):
	}
}

// sigpipeChildEnv marks the child process that runs the SIGPIPE check.
const sigpipeChildEnv = "MOSNLITE_TEST_SIGPIPE_CHILD"

// BenchmarkSocketSyscalls compares, on one loopback TCP connection, a
// round trip of 64 bytes each way made with read(2)/write(2) and with the
// recvfrom(2)/sendto(2) that the exchange uses: four syscalls an op, as an
// exchange's two reads and two writes.
func BenchmarkSocketSyscalls(b *testing.B) {
	for _, bc := range []struct {
		name       string
		read, send func(fd int, b []byte) (int, error)
	}{
		{"read-write",
			func(fd int, p []byte) (int, error) { return rawRW(unix.SYS_READ, fd, p, 0) },
			func(fd int, p []byte) (int, error) { return rawRW(unix.SYS_WRITE, fd, p, 0) }},
		{"recvfrom-sendto", recvRaw, sendRaw},
	} {
		b.Run(bc.name, func(b *testing.B) {
			x, y := socketPair(b, "tcp")
			msg, buf := make([]byte, 64), make([]byte, 4096)
			// recv reads until the 64 bytes are in; loopback delivers a
			// write before it returns, so the first read nearly always has it.
			recv := func(fd int) {
				for got := 0; got < len(msg); {
					n, err := bc.read(fd, buf)
					switch {
					case err == unix.EAGAIN:
						continue
					case err != nil || n == 0:
						b.Fatalf("read: %d, %v", n, err)
					}
					got += n
				}
			}
			withFD(b, x, func(fx int) {
				withFD(b, y, func(fy int) {
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, err := bc.send(fx, msg); err != nil {
							b.Fatal(err)
						}
						recv(fy)
						if _, err := bc.send(fy, msg); err != nil {
							b.Fatal(err)
						}
						recv(fx)
					}
				})
			})
		})
	}
}

package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testWait = 5 * time.Second

// testProto has a small type, a type with descriptors and nothing else.
func testProto() Protocol {
	return Protocol{Magic: "TST1", Spec: func(t Type) (TypeSpec, bool) {
		switch t {
		case 1:
			return TypeSpec{Name: "small", MaxPayload: 16}, true
		case 2:
			return TypeSpec{Name: "fds", MaxPayload: 1 << 10, MaxFDs: 300}, true
		}
		return TypeSpec{}, false
	}}
}

func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(testWait))
		return c.(*net.UnixConn)
	}
	return wrap(fds[0]), wrap(fds[1])
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func devNull(t *testing.T, n int) []int {
	t.Helper()
	var fds []int
	for i := 0; i < n; i++ {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	return fds
}

func header(magic string, typ Type, flags uint8, n uint32) []byte {
	h := []byte(magic)
	h = append(h, byte(typ), flags)
	return binary.BigEndian.AppendUint32(h, n)
}

func TestRoundTripManyFDs(t *testing.T) {
	base := fdCount(t)
	a, b := unixPair(t)
	fds := devNull(t, 300) // more than one control message holds
	done := make(chan error, 1)
	go func() {
		err := testProto().WriteFrame(a, 2, 0, []byte("hello"), fds)
		if err == nil {
			err = testProto().WriteFrame(a, 1, 0, nil, nil)
		}
		done <- err
	}()
	d := NewDecoder(b, testProto())
	f, err := d.Next()
	if err != nil || f.Type != 2 || string(f.Payload) != "hello" || len(f.FDs) != 300 {
		t.Fatalf("got %v %q %d fds, %v", f.Type, f.Payload, len(f.FDs), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	CloseFDs(fds)
	files := f.Files(func(int) string { return "x" })
	for _, file := range files {
		fl, err := unix.FcntlInt(file.Fd(), unix.F_GETFD, 0)
		if err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Fatalf("received fd not close-on-exec: %v", err)
		}
		file.Close()
	}
	if f2, err := d.Next(); err != nil || f2.Type != 1 || len(f2.FDs) != 0 {
		t.Fatalf("second frame %v %d fds, %v", f2.Type, len(f2.FDs), err)
	}
	if n := fdCount(t); n > base+2 {
		t.Fatalf("%d fds open, want %d", n, base+2)
	}
}

func TestLimitsAndGarbage(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		fds  int
		oob  int // decoder's control room, in fds; 0: the default
		kind error
		want string
	}{
		{"over its type's limit", header("TST1", 1, 0, 17), 0, 0, nil, "small frame of 17 bytes exceeds the 16 byte limit of its type"},
		{"over the global limit", header("TST1", 9, FlagOptional, MaxPayload+1), 0, 0, nil, "exceeds"},
		{"bad magic", header("XXXX", 1, 0, 0), 1, 0, ErrBadMagic, "bad magic"},
		{"descriptors on a type without", append(header("TST1", 1, 0, 2), "{}"...), 2, 0, nil, "small frame came with 2 descriptors, its type carries at most 0"},
		{"unknown mandatory", append(header("TST1", 9, 0, 2), "{}"...), 1, 0, nil, "unknown mandatory frame type 9"},
		{"truncated", append(header("TST1", 2, 0, 100), "{}"...), 2, 0, ErrTruncated, "truncated"},
		{"control message truncated", append(header("TST1", 2, 0, 2), "{}"...), 3, 1, nil, "control message truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := fdCount(t)
			a, b := unixPair(t)
			fds := devNull(t, tt.fds)
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			if _, _, err := a.WriteMsgUnix(tt.data[:1], oob, nil); err != nil {
				t.Fatal(err)
			}
			a.Write(tt.data[1:])
			CloseFDs(fds)
			a.CloseWrite()
			d := NewDecoder(b, testProto())
			if tt.oob > 0 {
				d.oob = make([]byte, unix.CmsgSpace(tt.oob*4))
			}
			_, err := d.Next()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !IsFrameError(err) {
				t.Fatalf("got %v, want a frame error containing %q", err, tt.want)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Fatalf("got %v, want kind %v", err, tt.kind)
			}
			if n := fdCount(t); n > base+2 {
				t.Fatalf("received fds leaked: %d open, want %d", n, base+2)
			}
		})
	}
}

// An unknown optional frame is skipped, descriptors closed, payload read in
// chunks and never held whole; the next frame is read as usual.
func TestUnknownOptionalSkipped(t *testing.T) {
	base := fdCount(t)
	a, b := unixPair(t)
	big := make([]byte, 4<<20)
	fds := devNull(t, 2)
	go func() {
		a.WriteMsgUnix(header("TST1", 77, FlagOptional, uint32(len(big)))[:1], unix.UnixRights(fds...), nil)
		a.Write(header("TST1", 77, FlagOptional, uint32(len(big)))[1:])
		a.Write(big)
		testProto().WriteFrame(a, 1, 0, []byte("next"), nil)
	}()
	f, err := NewDecoder(b, testProto()).Next()
	if err != nil || f.Type != 1 || string(f.Payload) != "next" {
		t.Fatalf("got %v %q, %v; want the frame after the skipped one", f.Type, f.Payload, err)
	}
	CloseFDs(fds)
	if n := fdCount(t); n > base+2 {
		t.Fatalf("fds of the skipped frame leaked: %d open, want %d", n, base+2)
	}
}

func TestWriteRefusesOverLimit(t *testing.T) {
	a, _ := unixPair(t)
	if err := testProto().WriteFrame(a, 1, 0, make([]byte, 17), nil); err == nil || !strings.Contains(err.Error(), "small frame of 17 bytes") {
		t.Fatalf("got %v", err)
	}
	if err := testProto().WriteFrame(a, 1, 0, nil, []int{0}); err == nil || !strings.Contains(err.Error(), "descriptors") {
		t.Fatalf("got %v", err)
	}
}

func TestCleanEOF(t *testing.T) {
	a, b := unixPair(t)
	a.CloseWrite()
	if _, err := NewDecoder(b, testProto()).Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

// A dead child that nobody reaped yet is not alive: it serves nothing.
func TestProcessAlive(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Fatal("we are not alive")
	}
	if ProcessAlive(0) || ProcessAlive(-1) {
		t.Fatal("pid 0 or -1 alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	deadline := time.Now().Add(testWait)
	for ProcessAlive(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("an exited, unreaped child still counts as alive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var si unix.Siginfo
	// Still a zombie: not reaped.
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &si, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBound(t *testing.T) {
	if got := Bound("short", 10); got != "short" {
		t.Fatal(got)
	}
	got := Bound(strings.Repeat("é", 1000), 101)
	if len(got) > 130 || !strings.HasSuffix(got, "(2000 bytes)") || !strings.HasPrefix(got, "éé") {
		t.Fatalf("Bound = %q", got)
	}
}

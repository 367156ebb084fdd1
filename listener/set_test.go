package listener

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/listener/ident"
)

const testWait = 5 * time.Second

func tcpSpec(name, addr string) Spec {
	sp, err := ident.New(name, KindServer, "tcp", addr)
	if err != nil {
		panic(err)
	}
	return sp
}

// exportFiles exports s's listeners as owned duplicates, the way a receiving
// process ends up with them.
func exportFiles(t *testing.T, s *Set) ([]Spec, []*os.File) {
	t.Helper()
	var specs []Spec
	var files []*os.File
	err := s.Export(func(sp []Spec, fds []int) error {
		for i, fd := range fds {
			nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return err
			}
			specs = append(specs, sp[i])
			files = append(files, os.NewFile(uintptr(nfd), sp[i].Name))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return specs, files
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "lst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// handOver exports old's listeners and returns a set inheriting them.
func handOver(t *testing.T, old *Set) *Set {
	t.Helper()
	specs, files := exportFiles(t, old)
	inh := make([]Inherited, len(specs))
	for i := range specs {
		inh[i] = Inherited{Spec: specs[i], File: files[i]}
	}
	return NewSet(inh, nil)
}

func acceptWithin(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	type deadliner interface{ SetDeadline(time.Time) error }
	if d, ok := l.Listener.(deadliner); ok {
		d.SetDeadline(time.Now().Add(testWait))
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("accept on %s: %v", l.Spec, err)
	}
	return c
}

func TestOpenBindsFresh(t *testing.T) {
	s := NewSet(nil, nil)
	defer s.CloseAll()
	l, err := s.Open(tcpSpec("web", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Inherited {
		t.Fatal("fresh listener marked inherited")
	}
	if l.Spec.AnyPort() || !strings.HasPrefix(l.Spec.Address, "127.0.0.1:") {
		t.Fatalf("Spec.Address = %q, want the bound port", l.Spec.Address)
	}
	c, err := net.Dial("tcp", l.Spec.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acceptWithin(t, l).Close()

	if _, err := s.Open(tcpSpec("again", l.Spec.Address)); err == nil {
		t.Fatal("opening an address twice succeeded")
	}
}

// A connection queued on the old socket before the handoff, never accepted
// there, is accepted by the new set: the very kernel socket moved.
func TestHandoffKeepsAcceptQueue(t *testing.T) {
	old := NewSet(nil, nil)
	l1, err := old.Open(tcpSpec("web", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l1.Spec.Address
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}

	nw := handOver(t, old)
	defer nw.CloseAll()
	// Renamed, and spelled differently: matching is by network and normalised address.
	spelled := strings.Replace(addr, "127.0.0.1", "[::ffff:127.0.0.1]", 1)
	l2, err := nw.Open(tcpSpec("renamed", spelled))
	if err != nil {
		t.Fatal(err)
	}
	if !l2.Inherited || l2.Spec.Address != addr {
		t.Fatalf("got %+v, want inherited at %s", l2.Spec, addr)
	}
	if err := old.CloseAll(); err != nil {
		t.Fatal(err)
	}
	if got := nw.CloseUnclaimed(); len(got) != 0 {
		t.Fatalf("unclaimed = %v, want none", got)
	}

	sc := acceptWithin(t, l2)
	defer sc.Close()
	buf := make([]byte, 6)
	sc.SetReadDeadline(time.Now().Add(testWait))
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "queued" {
		t.Fatalf("read %q, %v; want the queued bytes", buf, err)
	}
}

func TestAnyPortMatchedByName(t *testing.T) {
	old := NewSet(nil, nil)
	svc := Spec{Name: "admin", Kind: KindService, Network: "tcp", Address: "127.0.0.1:0"}
	l1, err := old.Open(svc)
	if err != nil {
		t.Fatal(err)
	}
	nw := handOver(t, old)
	defer nw.CloseAll()
	old.CloseAll()

	// Same address but another kind must not take it.
	other, err := nw.Open(Spec{Name: "admin", Kind: KindServer, Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if other.Inherited {
		t.Fatal("port-0 listener of another kind took the inherited socket")
	}
	l2, err := nw.Open(svc)
	if err != nil {
		t.Fatal(err)
	}
	if !l2.Inherited || l2.Spec.Address != l1.Spec.Address {
		t.Fatalf("got %+v inherited=%v, want inherited at %s", l2.Spec, l2.Inherited, l1.Spec.Address)
	}
	c, err := net.Dial("tcp", l2.Spec.Address)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	acceptWithin(t, l2).Close()
}

func TestUnclaimedClosed(t *testing.T) {
	old := NewSet(nil, nil)
	l1, err := old.Open(tcpSpec("gone", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l1.Spec.Address
	nw := handOver(t, old)
	old.CloseAll()
	got := nw.CloseUnclaimed()
	if len(got) != 1 || got[0].Address != addr || got[0].Name != "gone" {
		t.Fatalf("CloseUnclaimed = %v, want [%s]", got, addr)
	}
	if again := nw.CloseUnclaimed(); len(again) != 0 {
		t.Fatalf("second CloseUnclaimed = %v", again)
	}
	// Every copy of the socket is closed: the port refuses connections.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("dropped listener still accepts connections")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want connection refused", err)
	}
}

// A listener whose name matches but whose address changed is bound fresh,
// and the inherited socket is left unclaimed.
func TestChangedAddressIsNewListener(t *testing.T) {
	dir := shortDir(t)
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	old := NewSet(nil, nil)
	if _, err := old.Open(Spec{Name: "u", Kind: KindServer, Network: "unix", Address: a}); err != nil {
		t.Fatal(err)
	}
	nw := handOver(t, old)
	defer nw.CloseAll()
	old.CloseAll()
	l, err := nw.Open(Spec{Name: "u", Kind: KindServer, Network: "unix", Address: b})
	if err != nil {
		t.Fatal(err)
	}
	if l.Inherited {
		t.Fatal("listener with a changed address took the inherited socket")
	}
	if got := nw.CloseUnclaimed(); len(got) != 1 || got[0].Address != a {
		t.Fatalf("CloseUnclaimed = %v, want [%s]", got, a)
	}
}

func TestUnixCloseDoesNotUnlink(t *testing.T) {
	dir := shortDir(t)
	p := filepath.Join(dir, "u.sock")
	old := NewSet(nil, nil)
	if _, err := old.Open(Spec{Name: "u", Kind: KindServer, Network: "unix", Address: p}); err != nil {
		t.Fatal(err)
	}
	nw := handOver(t, old)
	if err := old.CloseAll(); err != nil {
		t.Fatal(err)
	}
	assertSocket(t, p)

	l, err := nw.Open(Spec{Name: "u", Kind: KindServer, Network: "unix", Address: p})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Inherited {
		t.Fatal("unix listener not adopted")
	}
	c, err := net.Dial("unix", p)
	if err != nil {
		t.Fatalf("dial the adopted unix socket after the old closed: %v", err)
	}
	c.Close()
	acceptWithin(t, l).Close()
	nw.CloseAll()
	assertSocket(t, p)

	if err := nw.RemoveUnixPaths(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("RemoveUnixPaths left %s: %v", p, err)
	}
}

func TestRemoveUnixPathsSparesRebound(t *testing.T) {
	dir := shortDir(t)
	p := filepath.Join(dir, "u.sock")
	s := NewSet(nil, nil)
	if _, err := s.Open(Spec{Name: "u", Kind: KindServer, Network: "unix", Address: p}); err != nil {
		t.Fatal(err)
	}
	s.CloseAll()
	// Someone else binds the path anew.
	other := NewSet(nil, nil)
	defer other.CloseAll()
	if _, err := other.Open(Spec{Name: "u", Kind: KindServer, Network: "unix", Address: p}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUnixPaths(); err != nil {
		t.Fatal(err)
	}
	assertSocket(t, p)
}

func TestUnixStaleAndLive(t *testing.T) {
	dir := shortDir(t)
	p := filepath.Join(dir, "s.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	s := NewSet(nil, nil)
	defer s.CloseAll()
	if _, err := s.Open(Spec{Name: "s", Network: "unix", Address: p}); err != nil {
		t.Fatalf("open over a stale socket: %v", err)
	}
	// Now p is live: a second set must not steal it.
	s2 := NewSet(nil, nil)
	if _, err := s2.Open(Spec{Name: "s", Network: "unix", Address: p}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("open over a live socket: %v, want in use", err)
	}
	assertSocket(t, p)

	reg := filepath.Join(dir, "file")
	if err := os.WriteFile(reg, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Open(Spec{Name: "f", Network: "unix", Address: reg}); err == nil {
		t.Fatal("open over a regular file succeeded")
	}
	if b, err := os.ReadFile(reg); err != nil || string(b) != "x" {
		t.Fatal("regular file was touched")
	}
}

func TestInheritedNonListeningSocketRefused(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "pair")
	dir := shortDir(t)
	p := filepath.Join(dir, "x.sock")
	s := NewSet([]Inherited{{Spec: Spec{Name: "x", Network: "unix", Address: p}, File: f}}, nil)
	if _, err := s.Open(Spec{Name: "x", Network: "unix", Address: p}); err == nil || !strings.Contains(err.Error(), "not a listening socket") {
		t.Fatalf("Open = %v, want not a listening socket", err)
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("inherited file not closed after a failed adopt: %v", err)
	}
}

func TestExportSkipsClosed(t *testing.T) {
	s := NewSet(nil, nil)
	defer s.CloseAll()
	a, err := s.Open(tcpSpec("a", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(tcpSpec("b", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	specs, files := exportFiles(t, s)
	for _, f := range files {
		f.Close()
	}
	if len(specs) != 1 || specs[0] != b.Spec {
		t.Fatalf("Export = %v, want only %v", specs, b.Spec)
	}
}

// Exporting, and even reading the exported file's Fd, must leave the shared
// socket non-blocking, so that Close still wakes a pending Accept.
func TestCloseWakesAcceptAfterExport(t *testing.T) {
	s := NewSet(nil, nil)
	l, err := s.Open(tcpSpec("web", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	_, files := exportFiles(t, s)
	defer files[0].Close()
	fd := files[0].Fd()
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		t.Fatal("exported socket is in blocking mode")
	}
	if fl, _ := unix.FcntlInt(fd, unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
		t.Fatal("exported fd is not close-on-exec")
	}

	accepted := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				done <- err
				return
			}
			c.Close()
			if i == 0 {
				close(accepted)
			}
		}
	}()
	c, err := net.Dial("tcp", l.Spec.Address)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-accepted:
	case <-time.After(testWait):
		t.Fatal("accept did not run")
	}
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept returned %v, want net.ErrClosed", err)
		}
	case <-time.After(testWait):
		// Unstick the blocked accept so the test binary can exit.
		if c, err := net.Dial("tcp", l.Spec.Address); err == nil {
			c.Close()
		}
		t.Fatal("Close did not wake Accept after Export")
	}
	<-closed
}

func assertSocket(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("socket path %s: %v", p, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket", p)
	}
}

// An inherited socket is taken only if its real address (getsockname) is the
// one its entry and the config name: a manifest whose fd listens on
// 127.0.0.2 while its entry says 127.0.0.1 is refused, naming both.
func TestInheritedAddressChecked(t *testing.T) {
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	defer other.Close()
	port := other.Addr().(*net.TCPAddr).Port
	claimed := tcpSpec("web", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	f, err := other.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet([]Inherited{{Spec: claimed, File: f}}, nil)
	defer s.CloseAll()
	_, err = s.Open(claimed)
	if err == nil || !strings.Contains(err.Error(), "bound to 127.0.0.2:") || !strings.Contains(err.Error(), "says 127.0.0.1:") {
		t.Fatalf("Open = %v, want a refusal naming both addresses", err)
	}
	// The family too: a tcp6 entry for an IPv4 socket.
	v4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	f4, _ := v4.(*net.TCPListener).File()
	lie, _ := ident.New("v6", KindServer, "tcp6", v4.Addr().String())
	s2 := NewSet([]Inherited{{Spec: lie, File: f4}}, nil)
	defer s2.CloseAll()
	if _, err := s2.Open(lie); err == nil || !strings.Contains(err.Error(), "tcp4 socket") {
		t.Fatalf("Open = %v, want a refusal naming the family", err)
	}
}

// A paused listener accepts nothing (Accept returns net.ErrClosed) but keeps
// its socket: a connection made meanwhile waits in the accept queue and is
// accepted after Resume.
func TestPauseResume(t *testing.T) {
	s := NewSet(nil, nil)
	defer s.CloseAll()
	l, err := s.Open(tcpSpec("web", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	if err := l.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Pause = %v, want net.ErrClosed", err)
	}
	c, err := net.Dial("tcp", l.Spec.Address)
	if err != nil {
		t.Fatalf("dial a paused listener: %v", err)
	}
	defer c.Close()
	c.Write([]byte("q"))
	if _, files := exportFiles(t, s); len(files) != 1 {
		t.Fatalf("a paused listener is not exported: %d files", len(files))
	} else {
		files[0].Close()
	}
	if err := l.Resume(); err != nil {
		t.Fatal(err)
	}
	sc := acceptWithin(t, l)
	defer sc.Close()
	b := make([]byte, 1)
	if _, err := io.ReadFull(sc, b); err != nil || b[0] != 'q' {
		t.Fatalf("read %q %v", b, err)
	}
}

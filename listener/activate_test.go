package listener

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// activated binds what a socket unit would (network, address) and returns
// it as the process manager hands it over: a descriptor of its own, named.
// The test's listener is closed at cleanup; the kernel socket lives while
// the returned file (or what adopts it) holds it.
func activated(t *testing.T, name, network, address string) (Activated, net.Listener) {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := Dup(ln.(syscall.Conn), "LISTEN_FDS fd ("+name+")")
	if err != nil {
		t.Fatal(err)
	}
	return Activated{Name: name, File: f}, ln
}

func unixSpec(t *testing.T, name, path string) Spec {
	sp, err := ident.New(name, KindServer, "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func TestMatchActivatedByNameAndAddress(t *testing.T) {
	dir := shortDir(t)
	web, webLn := activated(t, "web", "tcp", "127.0.0.1:0")
	// The socket unit's default name: matched by its address instead.
	api, apiLn := activated(t, "mosnlite.socket", "tcp", "127.0.0.1:0")
	sock := filepath.Join(dir, "u.sock")
	local, _ := activated(t, "unknown", "unix", sock)
	cfg := []Spec{
		tcpSpec("web", webLn.Addr().String()),
		tcpSpec("api", apiLn.Addr().String()),
		unixSpec(t, "local", sock),
		tcpSpec("fresh", "127.0.0.1:0"), // no socket for it: bound as usual
	}
	in, err := MatchActivated(cfg, []Activated{web, api, local})
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 3 || in[0].Spec != cfg[0] || in[1].Spec != cfg[1] || in[2].Spec != cfg[2] {
		t.Fatalf("matched %+v", in)
	}
	// They are adopted like sockets from a predecessor: the very socket.
	set := NewSet(in, nil)
	defer set.CloseAll()
	for i, sp := range cfg {
		l, err := set.Open(sp)
		if err != nil {
			t.Fatal(err)
		}
		if l.Inherited != (i < 3) {
			t.Errorf("%s: inherited %v", sp.Name, l.Inherited)
		}
	}
	c, err := net.Dial("tcp", webLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hi"))
	l, _ := set.Open(cfg[0]) // already open: the set says so
	if l != nil {
		t.Fatal("opened web twice")
	}
	got := acceptFrom(t, set, "web")
	if got != "hi" {
		t.Fatalf("adopted web read %q", got)
	}
}

// acceptFrom accepts one connection on the set's listener name and reads 2 bytes.
func acceptFrom(t *testing.T, s *Set, name string) string {
	t.Helper()
	s.mu.Lock()
	var l *Listener
	for _, o := range s.open {
		if o.Spec.Name == name {
			l = o
		}
	}
	s.mu.Unlock()
	l.Listener.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(testWait))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(testWait))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A wildcard socket (ListenStream=PORT binds [::] dual-stack) matches a
// listener configured on 0.0.0.0 of that port.
func TestMatchActivatedWildcard(t *testing.T) {
	a, ln := activated(t, "", "tcp", "[::]:0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	in, err := MatchActivated([]Spec{tcpSpec("web", "0.0.0.0:"+port)}, []Activated{a})
	if err != nil {
		t.Fatal(err)
	}
	in[0].File.Close()
}

func TestMatchActivatedRefuses(t *testing.T) {
	other, otherLn := activated(t, "metrics", "tcp", "127.0.0.1:0")
	_ = otherLn
	cfgOf := func(addr string) []Spec { return []Spec{tcpSpec("web", addr)} }
	tests := []struct {
		name string
		act  func(t *testing.T) ([]Activated, []Spec)
		want string
	}{
		{"matches nothing", func(t *testing.T) ([]Activated, []Spec) {
			a, _ := activated(t, "metrics", "tcp", "127.0.0.1:0")
			return []Activated{a}, cfgOf("127.0.0.1:1")
		}, `socket "metrics" (LISTEN_FDS fd (metrics)), bound to tcp4 127.0.0.1:`},
		{"the name of a listener bound elsewhere", func(t *testing.T) ([]Activated, []Spec) {
			a, _ := activated(t, "web", "tcp", "127.0.0.1:0")
			return []Activated{a}, cfgOf("127.0.0.2:8080")
		}, "has the name of listener server web tcp://127.0.0.2:8080 but fd is bound to"},
		{"two for one listener", func(t *testing.T) ([]Activated, []Spec) {
			a, ln := activated(t, "web", "tcp", "127.0.0.1:0")
			f, _ := Dup(ln.(syscall.Conn), "the same socket again")
			return []Activated{a, {Name: "unknown", File: f}}, cfgOf(ln.Addr().String())
		}, "took already"},
		{"a datagram socket", func(t *testing.T) ([]Activated, []Spec) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			f, _ := Dup(pc.(syscall.Conn), "udp")
			return []Activated{{Name: "web", File: f}}, cfgOf("127.0.0.1:1")
		}, "not a stream socket"},
		{"a connection, not a listener", func(t *testing.T) ([]Activated, []Spec) {
			c, err := net.Dial("tcp", otherLn.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			f, _ := Dup(c.(syscall.Conn), "conn")
			return []Activated{{Name: "web", File: f}}, cfgOf("127.0.0.1:1")
		}, "not a listening socket"},
		{"not a socket", func(t *testing.T) ([]Activated, []Spec) {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			return []Activated{{Name: "web", File: f}}, cfgOf("127.0.0.1:1")
		}, "not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			act, cfg := tt.act(t)
			_, err := MatchActivated(cfg, act)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("MatchActivated = %v, want an error with %q", err, tt.want)
			}
			// Every file was closed.
			for _, a := range act {
				if err := a.File.Close(); err == nil {
					t.Errorf("%s still open after the error", a.File.Name())
				}
			}
		})
	}
	other.File.Close()
}

package wire

import (
	"os"
	"testing"
)

func TestAllowPeer(t *testing.T) {
	tests := []struct {
		our, peer uint32
		want      bool
	}{
		{1000, 1000, true},
		{1000, 1001, false},
		{1000, 0, true},   // root could take the sockets anyway
		{0, 1000, false},  // a root process hands nothing to another user
		{0, 65534, false}, // nobody
		{0, 0, true},
	}
	for _, tt := range tests {
		if got := AllowPeer(tt.our, tt.peer); got != tt.want {
			t.Errorf("AllowPeer(%d, %d) = %v, want %v", tt.our, tt.peer, got, tt.want)
		}
	}
}

func TestPeerCredIsOurs(t *testing.T) {
	a, _ := unixPair(t)
	pid, uid, err := PeerCred(a)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() || uid != uint32(os.Geteuid()) {
		t.Fatalf("PeerCred = %d/%d, want %d/%d", pid, uid, os.Getpid(), os.Geteuid())
	}
}

// The refusal of a peer of another uid by a real process is tested end to
// end in test/ (a peer running as nobody), since a process cannot pose as
// another peer uid to itself.

func TestPeerClosed(t *testing.T) {
	a, b := unixPair(t)
	if PeerClosed(a) {
		t.Fatal("an open, silent peer reads as closed")
	}
	b.Write([]byte("x"))
	if PeerClosed(a) {
		t.Fatal("a peer with unread data reads as closed")
	}
	var buf [1]byte
	a.Read(buf[:])
	b.Close()
	if !PeerClosed(a) {
		t.Fatal("a peer that closed its end reads as open")
	}
	a.Close()
	if PeerClosed(a) {
		t.Fatal("our own closed end tells nothing, want false")
	}
}

func TestPIDLabel(t *testing.T) {
	for _, tt := range []struct {
		seen, reported int
		want           any
	}{
		{1234, 1, 1234}, {0, 0, 0}, {0, 1, "1 (in another PID namespace)"},
	} {
		if got := PIDLabel(tt.seen, tt.reported); got != tt.want {
			t.Errorf("PIDLabel(%d, %d) = %v, want %v", tt.seen, tt.reported, got, tt.want)
		}
	}
}

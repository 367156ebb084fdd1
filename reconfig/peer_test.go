package reconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestAllowPeer(t *testing.T) {
	tests := []struct {
		our, peer uint32
		want      bool
	}{
		{1000, 1000, true},
		{1000, 1001, false},
		{1000, 0, false}, // a root peer is not ours either
		{0, 1000, true},  // root trusts anyone who reached its 0700 dir
		{0, 0, true},
	}
	for _, tt := range tests {
		if got := allowPeer(tt.our, tt.peer); got != tt.want {
			t.Errorf("allowPeer(%d, %d) = %v, want %v", tt.our, tt.peer, got, tt.want)
		}
	}
}

func TestPeerCredIsOurs(t *testing.T) {
	a, _ := unixPair(t)
	pid, uid, err := peerCred(a)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() || uid != uint32(os.Geteuid()) {
		t.Fatalf("peerCred = %d/%d, want %d/%d", pid, uid, os.Getpid(), os.Geteuid())
	}
}

// Running as root, a Server that believes it runs as another uid refuses
// our connection, logs it, and the caller gets an error, not a hang.
func TestServerRefusesOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to pose as another uid")
	}
	const other = 54321
	dir := shortDir(t)
	if err := os.Chown(dir, other, other); err != nil {
		t.Fatal(err)
	}
	log, hook := testLog()
	u, err := begin(testCtx(t, testWait), dir, log, os.Getpid(), other)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := u.TakeOver(ServerConfig{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// Our real process (root) sees a dir it does not own: refused up front.
	if _, err := Begin(testCtx(t, testWait), dir, quietLog()); err == nil || !strings.Contains(err.Error(), "owned by uid 54321") {
		t.Fatalf("Begin in another uid's dir: %v", err)
	}
	// A root peer that skips the dir check reaches the socket and is refused by the Server.
	os.Chown(dir, 0, 0)
	_, err = begin(testCtx(t, 2*time.Second), dir, quietLog(), os.Getpid(), 0)
	if err == nil || !strings.Contains(err.Error(), "did not answer on reconfig.sock") {
		t.Fatalf("Begin refused by the server: %v", err)
	}
	deadline := time.Now().Add(testWait)
	for !logged(hook.AllEntries(), logrus.WarnLevel, "uid 0") {
		if time.Now().After(deadline) {
			t.Fatal("refusal not logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, ReconfigSock)); err != nil {
		t.Fatal("reconfig.sock disturbed by a refused peer")
	}
}

// The new side refuses an old process of another uid.
func TestUpgradeRefusesOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to pose as another uid")
	}
	const other = 54321
	dir := shortDir(t)
	old := startOld(t, dir, testWait) // runs as root (uid 0)
	if err := os.Chown(dir, other, other); err != nil {
		t.Fatal(err)
	}
	_, err := begin(testCtx(t, testWait), dir, quietLog(), os.Getpid(), other)
	if err == nil || !strings.Contains(err.Error(), "runs as uid 0, we run as uid 54321: refused") {
		t.Fatalf("Begin = %v", err)
	}
	os.Chown(dir, 0, 0)
	if err := old.waitFail(t); err == nil {
		t.Fatal("old process saw no failure")
	}
}

func logged(entries []*logrus.Entry, level logrus.Level, sub string) bool {
	for _, e := range entries {
		if e.Level != level {
			continue
		}
		if err, ok := e.Data[logrus.ErrorKey].(error); ok && strings.Contains(err.Error(), sub) {
			return true
		}
	}
	return false
}

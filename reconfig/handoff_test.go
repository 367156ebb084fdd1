package reconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// oldProc is an in-process "running process": a fresh start that serves one
// tcp listener and records what its Server reports.
type oldProc struct {
	ln    *net.TCPListener
	srv   *Server
	succ  *Successor // set before acked receives
	acked chan int
	fails chan error
	start time.Time
}

func startOld(t *testing.T, dir string, timeout time.Duration) *oldProc {
	t.Helper()
	return startOldLog(t, dir, timeout, quietLog())
}

func startOldLog(t *testing.T, dir string, timeout time.Duration, log *logrus.Entry) *oldProc {
	t.Helper()
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if !u.Fresh() || u.Manifest().Generation != 0 {
		t.Fatalf("Begin in an empty dir: fresh=%v generation=%d", u.Fresh(), u.Manifest().Generation)
	}
	o := &oldProc{ln: tcpListener(t), acked: make(chan int, 1), fails: make(chan error, 4), start: time.Unix(1700000000, 0)}
	o.srv, err = u.TakeOver(ServerConfig{
		Log:            log,
		HandoffTimeout: timeout,
		Export: func(send func(Manifest, []int) error) error {
			f := dupFile(t, o.ln)
			defer f.Close()
			return send(Manifest{
				Generation:        3,
				StartTime:         o.start,
				Entries:           []ident.Spec{{Name: "web", Kind: ident.KindServer, Network: "tcp", Address: o.ln.Addr().String()}},
				Counters:          []sample.Sample{{Name: "cx_total", Kind: sample.KindCounter, Value: 5}},
				Histograms:        []histsample.Histogram{testHistogram("rq_seconds", 3)},
				SessionTicketKeys: []SessionTicketKey{{Key: bytes.Repeat([]byte{7}, SessionTicketKeySize), Created: o.start}},
			}, []int{int(f.Fd())})
		},
		OnAck: func(s *Successor) {
			o.succ = s
			t.Cleanup(func() { s.Close() })
			o.acked <- s.PID()
		},
		OnFail: func(_ int, err error) { o.fails <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func (o *oldProc) waitFail(t *testing.T) error {
	t.Helper()
	select {
	case err := <-o.fails:
		return err
	case <-time.After(testWait):
		t.Fatal("the old process did not report the failed upgrade")
		return nil
	}
}

func dialSend(t *testing.T, addr, msg string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	return c
}

func acceptRead(t *testing.T, ln *net.TCPListener, n int) string {
	t.Helper()
	ln.SetDeadline(time.Now().Add(testWait))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(testWait))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestFullHandoff(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	addr := old.ln.Addr().String()
	// Waiting in the accept queue, never accepted by the old process.
	dialSend(t, addr, "queued")

	up, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if m := up.Manifest(); up.Fresh() || up.OldPID() != os.Getpid() || m.Generation != 3 || !m.StartTime.Equal(old.start) {
		t.Fatalf("fresh=%v oldpid=%d generation=%d start=%v", up.Fresh(), up.OldPID(), m.Generation, m.StartTime)
	}
	if c := up.Manifest().Counters; len(c) != 1 || c[0].Name != "cx_total" || c[0].Value != 5 {
		t.Fatalf("counters = %v", c)
	}
	if h := up.Manifest().Histograms; len(h) != 1 || !reflect.DeepEqual(h[0], testHistogram("rq_seconds", 3)) {
		t.Fatalf("histograms = %+v", h)
	}
	if k := up.Manifest().SessionTicketKeys; len(k) != 1 || !bytes.Equal(k[0].Key, bytes.Repeat([]byte{7}, SessionTicketKeySize)) || !k[0].Created.Equal(old.start) {
		t.Fatalf("session ticket keys did not come through: %d", len(k))
	}
	files := up.Sockets()
	if len(files) != 1 || files[0].Spec.Address != addr || files[0].Spec.Kind != "server" {
		t.Fatalf("files = %+v", files)
	}
	nl, err := net.FileListener(files[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if _, err := os.Stat(filepath.Join(dir, ListenSock)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("listen.sock still there after the manifest: %v", err)
	}

	if err := up.Ack(testCtx(t, testWait)); err != nil {
		t.Fatal(err)
	}
	select {
	case pid := <-old.acked:
		if pid != os.Getpid() {
			t.Fatalf("OnAck pid = %d", pid)
		}
	case <-time.After(testWait):
		t.Fatal("OnAck not called")
	}
	if !old.srv.HandedOff() {
		t.Fatal("old server not handed off")
	}
	old.ln.Close() // the old process stops accepting
	if got := acceptRead(t, nl.(*net.TCPListener), 6); got != "queued" {
		t.Fatalf("new listener read %q", got)
	}

	newSrv, err := up.TakeOver(ServerConfig{Log: quietLog(), HandoffTimeout: testWait, Export: func(send func(Manifest, []int) error) error {
		return send(Manifest{Generation: up.Manifest().Generation + 1}, nil)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer newSrv.Close()
	assertMode(t, filepath.Join(dir, ReconfigSock), 0o600)
	assertMode(t, dir, 0o700)

	// While the old one drains into us, a further upgrade is refused.
	if _, err := Begin(testCtx(t, testWait), dir, quietLog()); !errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("upgrade during the drain: %v, want ErrUpgradeInProgress", err)
	}

	var mu sync.Mutex
	var got []Counts
	var done []MigrationDone
	followed := make(chan error, 1)
	var byeHandled atomic.Bool
	go func() {
		followed <- up.Follow(testCtx(t, testWait), FollowHooks{
			Counts: func(c Counts) {
				mu.Lock()
				got = append(got, c)
				mu.Unlock()
			},
			Migrated: func(m MigrationDone) {
				mu.Lock()
				done = append(done, m)
				mu.Unlock()
			},
			Bye: func() { byeHandled.Store(true) },
		})
	}()
	push := Counts{Counters: []sample.Sample{{Name: "cx_total", Kind: sample.KindCounter, Value: 2}}, Histograms: []histsample.Histogram{testHistogram("rq_seconds", 1)}}
	if err := old.succ.SendCounters(push); err != nil {
		t.Fatal(err)
	}
	if err := old.succ.MigrationDone(MigrationDone{Moved: 4, Failed: 1, Duration: 3 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := old.succ.Bye(); err != nil {
		t.Fatal(err)
	}
	// The old process exits after Bye: by then the successor has handled it
	// (it no longer shows the old one as draining).
	if !byeHandled.Load() {
		t.Fatal("Bye returned before the successor handled it")
	}
	if err := <-followed; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	mu.Lock()
	if len(got) != 1 || !reflect.DeepEqual(got[0], push) {
		t.Fatalf("followed counts = %+v, want %+v", got, push)
	}
	if len(done) != 1 || done[0] != (MigrationDone{Moved: 4, Failed: 1, Duration: 3 * time.Millisecond}) {
		t.Fatalf("migration done = %+v", done)
	}
	mu.Unlock()
	// The bye was confirmed (Bye waited for it), and the stream stays open
	// for the watch: the old process learns of our death or our release.
	select {
	case <-old.succ.Done():
	default:
		t.Fatal("Bye returned before the successor confirmed it")
	}
	select {
	case <-old.succ.Gone():
		t.Fatalf("stream closed after bye: %v", old.succ.Err())
	case <-old.succ.Released():
		t.Fatal("released without being asked")
	default:
	}
	if !old.succ.Watchable() {
		t.Fatal("this build's successor does not announce the watch")
	}

	// The successor now accepts the next upgrade.
	next, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("upgrade of the successor: %v", err)
	}
	if next.Manifest().Generation != up.Manifest().Generation+1 {
		t.Fatalf("generation = %d", next.Manifest().Generation)
	}
	next.Fail(errors.New("test done"))
}

func TestFreshStartAndClose(t *testing.T) {
	dir := filepath.Join(shortDir(t), "uds")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o700)
	if !u.Fresh() {
		t.Fatal("not a fresh start")
	}
	if err := u.Ack(context.Background()); err == nil {
		t.Fatal("Ack on a fresh start succeeded")
	}
	srv, err := u.TakeOver(ServerConfig{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ReconfigSock)
	assertMode(t, path, 0o600)
	assertMode(t, filepath.Join(dir, LockFile), 0o600)
	// The lock is free again.
	l, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after TakeOver: %v", err)
	}
	l.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reconfig.sock left after a final Close: %v", err)
	}
}

func TestStaleReconfigSockIsFreshStart(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, ReconfigSock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // as a killed process leaves it
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if !u.Fresh() {
		t.Fatal("stale reconfig.sock not read as a fresh start")
	}
	srv, err := u.TakeOver(ServerConfig{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("reconfig.sock not served after a stale start: %v", err)
	}
	c.Close()
}

func TestLockHeldIsBusy(t *testing.T) {
	dir := shortDir(t)
	first, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Begin(testCtx(t, testWait), dir, quietLog())
	if !errors.Is(err, ErrUpgradeInProgress) || err.Error() != "upgrade already in progress" {
		t.Fatalf("second Begin: %v", err)
	}
	first.Fail(errors.New("done"))
	again, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("Begin after Fail released the lock: %v", err)
	}
	again.Fail(nil)
}

// A process that asks while another handoff runs gets 'B' and disturbs nothing.
func TestBusyWhileHandoffRuns(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	// A raw peer starts a handoff and stalls after 'U'.
	c, err := net.Dial("unix", filepath.Join(dir, ReconfigSock))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testWait))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'U' {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := Begin(testCtx(t, testWait), dir, quietLog()); !errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("Begin during a handoff: %v, want ErrUpgradeInProgress", err)
	}
	c.Close()
	if err := old.waitFail(t); err == nil {
		t.Fatal("nil failure")
	}
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("Begin after the stalled peer left: %v", err)
	}
	u.Fail(errors.New("done"))
	if err := old.waitFail(t); !strings.Contains(err.Error(), "done") {
		t.Fatalf("failure = %v, want the nack reason", err)
	}
}

// A nack leaves the old process serving, and the next upgrade succeeds.
func TestNackThenRetry(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	base := fdCount(t)

	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	u.Fail(errors.New("config does not validate: bad cluster"))
	if err := old.waitFail(t); !strings.Contains(err.Error(), "config does not validate: bad cluster") {
		t.Fatalf("old logged %v, want the nack reason", err)
	}
	waitFDs(t, base)
	if old.srv.HandedOff() {
		t.Fatal("old process handed off on a nack")
	}
	assertSocketAt(t, filepath.Join(dir, ReconfigSock))
	dialSend(t, old.ln.Addr().String(), "still")
	if got := acceptRead(t, old.ln, 5); got != "still" {
		t.Fatalf("old listener read %q", got)
	}

	u2, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("second upgrade: %v", err)
	}
	for _, f := range u2.Sockets() {
		if _, err := net.FileListener(f.File); err != nil {
			t.Fatal(err)
		}
	}
	if err := u2.Ack(testCtx(t, testWait)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.acked:
	case <-time.After(testWait):
		t.Fatal("second upgrade not acked")
	}
}

// fakeOld listens on reconfig.sock and runs script on the first connection.
func fakeOld(t *testing.T, dir string, script func(c *net.UnixConn)) {
	t.Helper()
	ln, err := bindSocket(dir, ReconfigSock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testWait))
		script(c)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

func assertCleanNew(t *testing.T, dir string, base int) {
	t.Helper()
	waitFDs(t, base)
	if _, err := os.Lstat(filepath.Join(dir, ListenSock)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("listen.sock left behind: %v", err)
	}
	assertSocketAt(t, filepath.Join(dir, ReconfigSock))
	l, err := lockDir(dir)
	if err != nil {
		t.Fatalf("upgrade lock not released: %v", err)
	}
	l.Close()
}

func TestOldDiesMidHandoff(t *testing.T) {
	tests := []struct {
		name   string
		script func(t *testing.T, dir string) func(c *net.UnixConn)
		want   []string // any of
	}{
		{"after U", func(t *testing.T, dir string) func(*net.UnixConn) {
			return func(c *net.UnixConn) { c.Write([]byte{'U'}) }
		}, []string{"closed the reconfig connection", "did not read our listen signal"}},
		{"after L", func(t *testing.T, dir string) func(*net.UnixConn) {
			return func(c *net.UnixConn) {
				c.Write([]byte{'U'})
				var b [1]byte
				io.ReadFull(c, b[:])
			}
		}, []string{"closed the reconfig connection"}},
		{"half a frame", func(t *testing.T, dir string) func(*net.UnixConn) {
			return func(c *net.UnixConn) {
				c.Write([]byte{'U'})
				var b [1]byte
				io.ReadFull(c, b[:])
				hc, err := net.Dial("unix", filepath.Join(dir, ListenSock))
				if err != nil {
					t.Error(err)
					return
				}
				defer hc.Close()
				fds := devNullFDs(t, 2)
				defer closeFDs(fds)
				p := manifestJSON(t, 2)
				frame := rawFrame(frameMagic, typeManifest, 0, uint32(len(p)), p)
				sendRaw(t, hc.(*net.UnixConn), frame[:len(frame)/2], fds)
				hc.Close()
				io.Copy(io.Discard, c) // hold the reconfig conn until the new side drops it
			}
			// An old process that never read our hello (one of an earlier
			// version) resets the connection as it goes: either is a clear end.
		}, []string{"truncated", "connection reset"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := shortDir(t)
			base := fdCount(t)
			fakeOld(t, dir, tt.script(t, dir))
			start := time.Now()
			_, err := Begin(testCtx(t, testWait), dir, quietLog())
			if err == nil || !containsAny(err.Error(), tt.want) {
				t.Fatalf("Begin = %v, want one of %q", err, tt.want)
			}
			if el := time.Since(start); el > testWait/2 {
				t.Fatalf("Begin took %v: it waited for the deadline", el)
			}
			assertCleanNew(t, dir, base+1) // +1: the fake old's listener
		})
	}
}

func TestOldNeverConnects(t *testing.T) {
	dir := shortDir(t)
	base := fdCount(t)
	hold := make(chan struct{})
	fakeOld(t, dir, func(c *net.UnixConn) {
		c.Write([]byte{'U'})
		var b [1]byte
		io.ReadFull(c, b[:])
		<-hold
	})
	defer close(hold)
	const deadline = 300 * time.Millisecond
	start := time.Now()
	_, err := Begin(testCtx(t, deadline), dir, quietLog())
	if err == nil || !strings.Contains(err.Error(), "did not connect to listen.sock within") {
		t.Fatalf("Begin = %v", err)
	}
	if el := time.Since(start); el > deadline+time.Second {
		t.Fatalf("Begin returned after %v, deadline %v", el, deadline)
	}
	assertCleanNew(t, dir, base+2)
}

func TestOldNeverAnswers(t *testing.T) {
	dir := shortDir(t)
	base := fdCount(t)
	hold := make(chan struct{})
	fakeOld(t, dir, func(c *net.UnixConn) { <-hold })
	defer close(hold)
	const deadline = 300 * time.Millisecond
	start := time.Now()
	_, err := Begin(testCtx(t, deadline), dir, quietLog())
	el := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not answer on reconfig.sock within") {
		t.Fatalf("Begin = %v", err)
	}
	if el > deadline+time.Second {
		t.Fatalf("Begin returned after %v, deadline %v", el, deadline)
	}
	assertCleanNew(t, dir, base+2) // the fake's listener and accepted conn
}

// The new process dies at each step: the old one reports it, keeps
// serving, closes what it sent, and can be upgraded at once.
func TestNewDiesMidHandoff(t *testing.T) {
	steps := []string{"after U", "after manifest", "after garbage"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := shortDir(t)
			old := startOld(t, dir, testWait)
			base := fdCount(t)
			func() {
				c, err := net.Dial("unix", filepath.Join(dir, ReconfigSock))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(testWait))
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'U' {
					t.Fatalf("read %q %v", b, err)
				}
				if step == "after U" {
					return
				}
				ln, err := bindSocket(dir, ListenSock)
				if err != nil {
					t.Fatal(err)
				}
				defer os.Remove(filepath.Join(dir, ListenSock))
				defer ln.Close()
				c.Write([]byte{'L'})
				ln.SetDeadline(time.Now().Add(testWait))
				hc, err := ln.AcceptUnix()
				if err != nil {
					t.Fatal(err)
				}
				defer hc.Close()
				hc.SetDeadline(time.Now().Add(testWait))
				_, files, err := readManifest(newDecoder(hc))
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					f.Close()
				}
				if step == "after garbage" {
					hc.Write([]byte("garbage!!!!!"))
				}
			}()
			err := old.waitFail(t)
			if err == nil {
				t.Fatal("nil failure")
			}
			if step == "after garbage" && !strings.Contains(err.Error(), "bad magic") {
				t.Fatalf("failure = %v, want bad magic", err)
			}
			waitFDs(t, base)
			assertSocketAt(t, filepath.Join(dir, ReconfigSock))
			u, err := Begin(testCtx(t, testWait), dir, quietLog())
			if err != nil {
				t.Fatalf("upgrade after the dead one: %v", err)
			}
			u.Fail(errors.New("done"))
			old.waitFail(t)
		})
	}
}

// The old process's handoff deadline: a new process that never acks is
// given up on, and the old one serves on.
func TestNewNeverAcks(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, 200*time.Millisecond)
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	err = old.waitFail(t)
	if err == nil || !strings.Contains(err.Error(), "did not ack within") {
		t.Fatalf("failure = %v", err)
	}
	if err := u.Ack(testCtx(t, testWait)); err == nil || !strings.Contains(err.Error(), "stopped waiting") {
		t.Fatalf("late Ack = %v, want refused", err)
	}
	u.Fail(err)
	if old.srv.HandedOff() {
		t.Fatal("handed off without an ack")
	}
}

func TestFollowWithoutBye(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Ack(testCtx(t, testWait)); err != nil {
		t.Fatal(err)
	}
	<-old.acked
	srv, err := u.TakeOver(ServerConfig{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	old.srv.Close() // the old process dies without a bye
	old.succ.Close()
	err = u.Follow(testCtx(t, testWait), FollowHooks{})
	if err == nil || !strings.Contains(err.Error(), "without bye") {
		t.Fatalf("Follow = %v", err)
	}
	// reconfig.sock is the successor's: the old Close must not remove it.
	c, err := net.Dial("unix", filepath.Join(dir, ReconfigSock))
	if err != nil {
		t.Fatalf("successor's reconfig.sock gone: %v", err)
	}
	c.Close()
}

func assertMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s mode %v, want %v", p, got, want)
	}
}

func assertSocketAt(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket: %v", p, err)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// A peer's nack reason is bounded before the old process logs or keeps it:
// a nack of kilobytes is cut to maxNackReason, and a 15 MiB one is refused
// from its header (the frame type's limit), never read whole.
func TestNackReasonBounded(t *testing.T) {
	for _, size := range []int{3 << 10, 15 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := shortDir(t)
			log, hook := testLog()
			old := startOldLog(t, dir, testWait, log)
			u, err := Begin(testCtx(t, testWait), dir, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			p, _ := json.Marshal(nackMsg{PID: 1, Reason: strings.Repeat("x", size)})
			u.conn.SetWriteDeadline(time.Now().Add(testWait))
			go u.conn.Write(rawFrame(frameMagic, typeNack, 0, uint32(len(p)), p)) // raw: past the sender-side limit
			err = old.waitFail(t)
			if len(err.Error()) > 2*maxNackReason {
				t.Fatalf("the old process kept a %d byte error for a %d byte nack", len(err.Error()), size)
			}
			for _, e := range hook.AllEntries() {
				if s, _ := e.String(); len(s) > 4*maxNackReason {
					t.Fatalf("logged a %d byte line for a %d byte nack", len(s), size)
				}
			}
			u.Fail(errors.New("done"))
			if old.srv.HandedOff() {
				t.Fatal("handed off on a nack")
			}
		})
	}
}

// The old process dies after sending its manifest and before reading the
// ack: the survivor, already serving, must end up an ordinary running
// process — owning reconfig.sock, the upgrade lock free — upgradable at once.
func TestSurvivorOfADeadPredecessorCanBeUpgraded(t *testing.T) {
	dir := shortDir(t)
	ln := tcpListener(t)
	died := make(chan struct{})
	fakeOld(t, dir, func(c *net.UnixConn) {
		defer close(died)
		c.Write([]byte{'U'})
		var b [1]byte
		io.ReadFull(c, b[:])
		hc, err := net.Dial("unix", filepath.Join(dir, ListenSock))
		if err != nil {
			t.Error(err)
			return
		}
		f := dupFile(t, ln)
		defer f.Close()
		m := Manifest{Version: ProtocolVersion, PID: 1, Generation: 1,
			Entries: []ident.Spec{{Name: "web", Kind: ident.KindServer, Network: "tcp", Address: ln.Addr().String()}}}
		p, _ := json.Marshal(m)
		writeFrame(hc.(*net.UnixConn), typeManifest, 0, p, []int{int(f.Fd())})
		hc.Close() // and dies: nobody reads the ack
	})
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	<-died
	if err := u.Ack(testCtx(t, testWait)); err == nil {
		t.Fatal("ack to a dead process succeeded")
	}
	u.Orphan()
	srv, err := u.TakeOver(ServerConfig{Log: quietLog(), HandoffTimeout: testWait,
		Export: func(send func(Manifest, []int) error) error { return send(Manifest{Generation: 2}, nil) }})
	if err != nil {
		t.Fatalf("the survivor cannot take over reconfig.sock: %v", err)
	}
	defer srv.Close()
	u2, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("upgrading the survivor: %v", err)
	}
	defer u2.Fail(errors.New("test over"))
	if u2.Fresh() || u2.OldPID() != os.Getpid() || u2.Manifest().Generation != 2 {
		t.Fatalf("second upgrade: fresh=%v old pid %d generation %d", u2.Fresh(), u2.OldPID(), u2.Manifest().Generation)
	}
}

package reconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// A successor that is alive but does not read (stopped, starved) makes our
// write time out. That is our failure, not its death: the stream must not
// look broken by it (Gone stays open, so the watch does not serve again
// beside it); our write side is shut, so that the successor, once it reads
// on, finds the end of the stream; and when its end really closes, Gone
// says so. (Before: the Successor closed the connection itself and reported
// Gone without Released.)
func TestOwnWriteTimeoutIsNotTheSuccessorsDeath(t *testing.T) {
	old, peer := unixPair(t) // peer: the successor's end, alive, not reading
	s := NewSuccessor(old, 4242, nil, true, StreamConfig{Log: quietLog(), WriteTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { s.Close() })
	big := Counts{}
	for i := 0; i < 40000; i++ {
		big.Counters = append(big.Counters, sample.Sample{Name: "c_" + strings.Repeat("x", 40), Labels: []string{"i", fmt.Sprint(i)}, Kind: sample.KindCounter, Value: float64(i)})
	}
	if err := s.SendCounters(big); err == nil {
		t.Fatal("SendCounters to a successor that reads nothing succeeded")
	}
	select {
	case <-s.Gone():
		t.Fatalf("Gone after our own write timed out, the successor's end open: %v", s.Err())
	case <-s.Ended():
		t.Fatalf("stream ended after our own write timed out: %v", s.Err())
	default:
	}
	if err := s.SendCounters(Counts{}); err == nil {
		t.Fatal("a write after a failed one succeeded: a partial frame is on the stream")
	}
	// The successor reads on: what we sent, then the end of the stream.
	peer.SetReadDeadline(time.Now().Add(testWait))
	if _, err := io.Copy(io.Discard, peer); err != nil {
		t.Fatalf("successor's read: %v, want the end of the stream", err)
	}
	// It closes its end (it exits, or dies): now Gone.
	peer.Close()
	select {
	case <-s.Gone():
	case <-time.After(testWait):
		t.Fatal("Gone not closed after the successor's end closed")
	}
}

// Our own Close, or garbage from the successor, ends the stream without
// proving its death: Ended, not Gone.
func TestStreamEndedHereIsNotDeath(t *testing.T) {
	old, peer := unixPair(t)
	s := NewSuccessor(old, 4242, nil, true, StreamConfig{Log: quietLog()})
	if _, err := peer.Write([]byte("garbage!garbage!")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ended():
	case <-time.After(testWait):
		t.Fatal("garbage did not end the stream")
	}
	select {
	case <-s.Gone():
		t.Fatalf("garbage taken for death: %v", s.Err())
	default:
	}
	s.Close()
	old2, _ := unixPair(t)
	s2 := NewSuccessor(old2, 4243, nil, true, StreamConfig{Log: quietLog()})
	s2.Close()
	<-s2.Ended()
	select {
	case <-s2.Gone():
		t.Fatal("our own Close taken for the successor's death")
	default:
	}
}

// The old process, stalled past its ack deadline, wakes to a read timeout
// while the ack the new one sent in time sits in its socket. It settles the
// handoff: its reading shut, the ack is found, and the handoff goes on —
// the new process, whose ack write succeeded, counts itself the owner, and
// so does the old one. (Before: the timeout was taken as "no ack": the old
// served on beside the new owner of reconfig.sock.)
func TestAckSentInTimeIsFoundAtTheDeadline(t *testing.T) {
	oldEnd, newEnd := unixPair(t)
	u := &Upgrade{log: quietLog(), pid: 2, conn: newEnd, followDone: make(chan struct{})}
	if err := u.Ack(testCtx(t, testWait)); err != nil {
		t.Fatal(err)
	}
	srv := &Server{pid: 1, log: quietLog()}
	f, err := srv.settle(oldEnd, newDecoder(oldEnd), os.ErrDeadlineExceeded)
	if err != nil || f.Type != typeAck {
		t.Fatalf("settle = %v, %v; want the ack", typeName(f.Type), err)
	}
}

// No ack by the deadline: the old process calls the handoff off (abort)
// and serves on. The new one's late ack fails, and it learns that the old
// one serves on — not that it is gone, even once the old one closes the
// connection: it must give up, not carry on beside it. (Before: the old
// one closed without a word, the ack failed with EPIPE, and the new one
// took that for the old one's death and carried on alone.)
func TestAckAfterTheAbortGivesUp(t *testing.T) {
	oldEnd, newEnd := unixPair(t)
	srv := &Server{pid: 1, log: quietLog()}
	if _, err := srv.settle(oldEnd, newDecoder(oldEnd), os.ErrDeadlineExceeded); err == nil {
		t.Fatal("settle found an ack nobody sent")
	}
	oldEnd.Close()
	u := &Upgrade{log: quietLog(), pid: 2, conn: newEnd, followDone: make(chan struct{})}
	err := u.Ack(testCtx(t, testWait))
	if err == nil || !strings.Contains(err.Error(), "called the handoff off") {
		t.Fatalf("Ack = %v, want the old process's abort", err)
	}
	if u.PredecessorGone() {
		t.Fatal("an old process that called the handoff off is taken for gone")
	}
}

// SIGTERM (Close) while a handoff waits for its ack: the new process is
// told the handoff is off, so it gives up rather than carry on as the
// owner of paths the stopping process then removes. (Before: Close closed
// the connection without a word; the new process's ack failed with EPIPE,
// it took the old one for dead and carried on alone, serving on unix paths
// and a reconfig.sock the old one was removing.)
func TestCloseDuringAHandoffCallsItOff(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	up, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Fail(nil) })
	if err := old.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if old.srv.HandedOff() {
		t.Fatal("handed off without an ack")
	}
	err = up.Ack(testCtx(t, testWait))
	if err == nil || !strings.Contains(err.Error(), "called the handoff off") {
		t.Fatalf("Ack after the old process's Close = %v, want its abort", err)
	}
	if up.PredecessorGone() {
		t.Fatal("the new process would carry on as the owner")
	}
	if _, err := os.Stat(filepath.Join(dir, ReconfigSock)); !os.IsNotExist(err) {
		t.Fatalf("reconfig.sock after a final Close: %v", err)
	}
}

// A failed upgrade of ours leaves our predecessor watching us: the watch
// ends only once a successor of ours has acked. (Before: the request alone
// released it, and a failed upgrade left nothing to serve again if we died.)
func TestFailedUpgradeKeepsThePredecessorWatching(t *testing.T) {
	dir := shortDir(t)
	a := startOld(t, dir, testWait)
	b, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(testCtx(t, testWait)); err != nil {
		t.Fatal(err)
	}
	<-a.acked
	followed := make(chan error, 1)
	go func() { followed <- b.Follow(context.Background(), FollowHooks{}) }()
	if err := a.succ.Bye(); err != nil {
		t.Fatal(err)
	}
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	srvB, err := b.TakeOver(ServerConfig{Log: quietLog(), HandoffTimeout: testWait,
		Export: func(send func(Manifest, []int) error) error { return send(Manifest{}, nil) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvB.Close() })
	c, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	c.Fail(errors.New("config refused"))
	select {
	case <-a.succ.Released():
		t.Fatal("a failed upgrade of B released A's watch")
	case <-time.After(100 * time.Millisecond):
	}
	b.Release() // what B's OnAck does once a successor acks
	select {
	case <-a.succ.Released():
	case <-time.After(testWait):
		t.Fatal("Release did not reach A")
	}
}

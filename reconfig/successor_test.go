package reconfig

import (
	"fmt"
	"io"
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

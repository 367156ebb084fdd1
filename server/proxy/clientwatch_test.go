package proxy

import (
	"testing"
	"time"
)

// The list starts the watches of the requests that have waited
// clientWatchDelay, oldest first, and no others; a stopped request is
// never started; the timer stays armed only while some request waits.
func TestWatchListStartsOnlyTheLongWaits(t *testing.T) {
	now := time.Unix(1000, 0)
	var started []*clientWatch
	l := &watchList{now: func() time.Time { return now }, start: func(w *clientWatch) { started = append(started, w) }}
	// The list's timer fires into nothing here: the test calls fire itself.
	l.timer = time.AfterFunc(time.Hour, func() {})
	p := &httpProxy{}
	mk := func() *clientWatch { return &clientWatch{c: &httpConn{p: p}, done: make(chan struct{}, 1)} }
	a, b, c := mk(), mk(), mk()
	l.add(a)
	now = now.Add(5 * time.Millisecond)
	l.add(b)
	now = now.Add(5 * time.Millisecond)
	l.add(c)
	defer l.timer.Stop()

	// b's request ends before anything is due: it leaves the list.
	l.mu.Lock()
	l.unlinkLocked(b)
	l.mu.Unlock()

	now = now.Add(clientWatchDelay - 10*time.Millisecond) // a is due, c is not
	l.fire()
	if len(started) != 1 || started[0] != a || !a.started || a.queued {
		t.Fatalf("after a's delay: started %d (a first: %v), a started=%v queued=%v", len(started), len(started) > 0 && started[0] == a, a.started, a.queued)
	}
	if !l.armed || l.head != c || l.tail != c {
		t.Fatalf("armed=%v, head is c: %v, tail is c: %v", l.armed, l.head == c, l.tail == c)
	}
	now = now.Add(10 * time.Millisecond) // c is due
	l.fire()
	if len(started) != 2 || started[1] != c {
		t.Fatalf("started %d watches, want a and c", len(started))
	}
	if b.started || l.armed || l.head != nil || l.tail != nil {
		t.Fatalf("b started=%v, armed=%v, list empty: %v", b.started, l.armed, l.head == nil && l.tail == nil)
	}
	// A new wait arms the timer again.
	l.add(b)
	if !l.armed || l.head != b {
		t.Fatalf("a new wait: armed=%v, head is b: %v", l.armed, l.head == b)
	}
}

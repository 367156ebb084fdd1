package proxy

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
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

// A client that goes away while its request waits upstream is seen going
// even when the request came on a keep-alive connection whose idle wait had
// armed a read deadline (for the handoff to the idle poller) that passes
// during the upstream wait: the watch waits without it.
func TestWatchOutlivesTheIdleWaitsDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	arrived := make(chan struct{}, 1)
	upstreamGone := make(chan struct{})
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				close(upstreamGone)
				return
			}
		}
		io.WriteString(w, "ok")
	})
	const handoff = 40 * time.Millisecond
	e := startTunedHTTP(t, func(p *httpProxy) { p.handoff = handoff },
		config.HTTPProxyConfig{}, singleRoute(30*time.Second), appCluster(be.addr()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	expectAnswer(t, br, "ok", false)
	answered := time.Now()
	// Sent at once: the idle wait it ends had armed its handoff deadline.
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived
	// The idle wait's deadline passes while the request waits upstream.
	time.Sleep(time.Until(answered.Add(3 * handoff)))
	c.Close()
	select {
	case <-upstreamGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request of a gone client was not reset")
	}
}

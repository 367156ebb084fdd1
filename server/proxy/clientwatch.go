package proxy

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// clientWatchDelay is how long a request waits for a connection or its
// response head before its client's socket is watched for a close. A quick
// answer costs a place in a list; only a slow one a goroutine.
const clientWatchDelay = 20 * time.Millisecond

// clientWatch watches the client's socket, while its request waits for an
// upstream connection or the response head with no body left to pump, for
// the client going away (EOF or a reset), as MOSN resets the upstream
// request when the downstream connection closes: the connection is then
// closed, which cancels the connect or the wait for a connection and
// discards the upstream connection, and every place the request held
// (max_requests, max_pending_requests, the connection) comes free on the way
// out. It only peeks: bytes that arrive are a pipelined request, not a
// close, and end the watch.
//
// A connection's watch is made at its first watched request and used again
// for each later one; it lives as long as the connection's rawIO (an idle
// connection that goes to the poller drops both). Waiting requests are not
// timed one by one: they queue, oldest first, in their proxy's watchList,
// whose one timer starts the watch of those that have waited
// clientWatchDelay. Arming and stopping a runtime timer for every request
// cost more than the rest of the watch, and a timer that becomes the
// earliest one wakes the runtime's network poller.
type clientWatch struct {
	c    *httpConn
	done chan struct{} // one value each time a started watch returns
	// Under the list's mu.
	since   time.Time // when the request began to wait
	links   links[clientWatch]
	queued  bool // in the list: not started yet
	started bool // its goroutine runs (or has run) for this wait
}

func (w *clientWatch) chainLinks() *links[clientWatch] { return &w.links }

// watchList is the requests of a proxy that wait upstream, oldest first,
// and the timer that starts their watches. The zero value is ready.
type watchList struct {
	now   func() time.Time   // nil: time.Now
	start func(*clientWatch) // nil: the watch's goroutine
	mu    sync.Mutex
	chain[clientWatch, *clientWatch]
	timer *time.Timer
	armed bool
}

// watchClient starts the watch (after clientWatchDelay); nil when the
// connection cannot be watched (no socket of its own) or has bytes of a
// next request buffered already.
func (c *httpConn) watchClient(now time.Time) *clientWatch {
	if c.raw == nil || c.r < c.w {
		return nil
	}
	w := c.raw.watch
	if w == nil {
		w = &clientWatch{c: c, done: make(chan struct{}, 1)}
		c.raw.watch = w
	}
	c.p.watches.addAt(w, now)
	return w
}

// add queues w at the tail and arms the timer if it was not.
func (l *watchList) add(w *clientWatch) { l.addAt(w, l.clock()) }

// addAt is add with now read by the caller.
func (l *watchList) addAt(w *clientWatch, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.since, w.queued, w.started = now, true, false
	l.push(w)
	if !l.armed {
		l.armed = true
		if l.timer == nil {
			l.timer = time.AfterFunc(clientWatchDelay, l.fire)
		} else {
			l.timer.Reset(clientWatchDelay)
		}
	}
}

func (l *watchList) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// unlinkLocked takes w out of the list.
func (l *watchList) unlinkLocked(w *clientWatch) {
	l.unlink(w)
	w.queued = false
}

// fire starts the watches of the requests that have waited long enough and
// arms the timer for the next, or leaves it unarmed when none waits.
func (l *watchList) fire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	for w := l.head; w != nil && now.Sub(w.since) >= clientWatchDelay; w = l.head {
		l.unlinkLocked(w)
		w.started = true
		if l.start != nil {
			l.start(w)
		} else {
			// The read deadline of the idle wait before the request (its
			// handoff's) may still be on the socket and pass during the
			// wait: the watch waits without one. Cleared here, before
			// stop can see it started and set its own, under mu.
			_ = w.c.nc.SetReadDeadline(time.Time{})
			go w.run()
		}
	}
	if l.head == nil {
		l.armed = false
		return
	}
	l.timer.Reset(clientWatchDelay - now.Sub(l.head.since))
}

// run waits for the client's socket to be readable and peeks at it.
func (w *clientWatch) run() {
	defer func() { w.done <- struct{}{} }()
	gone := false
	err := w.c.raw.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return false // nothing yet: wait for readiness
		case err != nil, n == 0:
			gone = true // reset, or EOF
		}
		return true // gone, or a pipelined request's bytes
	})
	if err == nil && gone {
		w.c.p.log.WithField("client", w.c.clientIP).Debug("client closed while its request waited upstream")
		_ = w.c.Close()
	}
}

// stop ends the watch before the serving goroutine reads the client again;
// the next watchClient may use it again.
func (w *clientWatch) stop() {
	if w == nil {
		return
	}
	l := &w.c.p.watches
	l.mu.Lock()
	started := w.started
	if w.queued {
		l.unlinkLocked(w)
	}
	w.started = false
	l.mu.Unlock()
	if !started {
		return
	}
	// The watch runs: a read deadline in the past ends its wait; every
	// later read sets its own deadline.
	w.c.forgetHandoff()
	_ = w.c.nc.SetReadDeadline(aLongTimeAgo())
	<-w.done
}

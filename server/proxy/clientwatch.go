package proxy

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// clientWatchDelay is how long a request waits for a connection or its
// response head before its client's socket is watched for a close. A quick
// answer costs one timer; only a slow one a goroutine.
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
type clientWatch struct {
	c     *httpConn
	timer *time.Timer
	done  chan struct{} // closed when the watching goroutine returns
}

// watchClient starts the watch (after clientWatchDelay); nil when the
// connection cannot be watched (no socket of its own) or has bytes of a
// next request buffered already.
func (c *httpConn) watchClient() *clientWatch {
	if c.raw == nil || c.r < c.w {
		return nil
	}
	w := &clientWatch{c: c, done: make(chan struct{})}
	w.timer = time.AfterFunc(clientWatchDelay, w.run)
	return w
}

// run waits for the client's socket to be readable and peeks at it.
func (w *clientWatch) run() {
	defer close(w.done)
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

// stop ends the watch before the serving goroutine reads the client again.
func (w *clientWatch) stop() {
	if w == nil || w.timer.Stop() {
		return
	}
	// The watch runs (or is about to): a read deadline in the past ends its
	// wait; every later read sets its own deadline.
	_ = w.c.nc.SetReadDeadline(aLongTimeAgo())
	<-w.done
}

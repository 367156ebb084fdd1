package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

// phase is where an HTTP connection is in its request cycle:
//
//	idle → reading → proxying → writing → idle …
//
// Idle is the request boundary: the only point where a drain closes the
// connection and where a migration hands it over.
type phase uint8

const (
	phaseIdle     phase = iota // waiting for the next request's first byte
	phaseReading               // reading the request head
	phaseProxying              // routing, talking to upstream, streaming the request body
	phaseWriting               // writing the response
	phaseClosed
)

func (p phase) String() string {
	return [...]string{"idle", "reading", "proxying", "writing", "closed"}[p]
}

// aLongTimeAgo is a deadline in the past (Unix second 1): setting it wakes a
// blocked read.
func aLongTimeAgo() time.Time { return time.Unix(1, 0) }

// How a goroutine starts serving a connection.
const (
	startFresh    = iota // accepted or adopted: read what is there, else wait
	startReadable        // the idle poller saw bytes arrive
	startWoken           // taken out of the idle poller by a drain or a move
)

// httpConn is one downstream HTTP/1.x connection. At most one goroutine
// serves it at a time. Between requests it holds no buffer, and once it has
// idled past the handoff a pollable one has no goroutine either: the idle
// poller of its HTTPRuntime holds it.
type httpConn struct {
	p  *httpProxy
	nc net.Conn // the accepted socket itself, or a wrapper (TLS) around it
	// raw does non-blocking I/O on the socket while a goroutine serves the
	// connection; nil for a wrapped conn (rawless) and while the idle poller
	// holds it (made anew when it wakes: an idle connection is kept small).
	raw      *rawIO
	clientIP string // "" for unix sockets
	id       uint64 // the connection's number in the process (MOSN's connection_id)
	scheme   string // "https" over TLS, else "http": X-Forwarded-Proto
	remove   func()

	// The read buffer, taken when bytes arrive and given back at the
	// request boundary: in.b[r:w] is read and not yet parsed. Owned by the
	// serving goroutine (and by a request body pump while one runs).
	in   *buffer
	r, w int
	// prefix is what a predecessor had read and not parsed (an adopted
	// connection), served before anything is read.
	prefix []byte

	mu sync.Mutex
	// idleSince is when the connection last became idle. While a request
	// is served, once endKnown, it is the reading of the clock taken at the
	// answer's end, which the request's duration and the idle wait that
	// follows reuse (written then by the serving goroutine without mu:
	// nothing else reads it while the connection is not idle).
	idleSince time.Time
	// up is the upstream connection of the request in flight, and
	// dialCancel the cancel of a connect in progress: Close aborts both.
	up         *cluster.Conn
	dialCancel context.CancelFunc
	// closing, while the connection waits parked for a migration's
	// decision, is closed by Close.
	closing chan struct{}

	// requests counts the requests read on this connection, in this process
	// and its predecessors. Owned by the serving goroutine.
	requests uint64
	// tail is the exchange whose answer's last bytes the next wait writes.
	tail *exchange

	// Idle poller state, under HTTPRuntime.mu.
	pollID    uint64
	idleLinks links[httpConn]

	// The small fields, packed: every idle connection has them.
	phase phase // under mu
	// busy is phase != phaseIdle, readable without mu (TrackedState);
	// written with phase. It stays as it was once the connection closed.
	busy     atomic.Bool
	ist      uint8 // under HTTPRuntime.mu
	peek     [1]byte
	draining bool // under mu
	closed   bool // under mu
	// moveWanted: Migrate was called, the connection moves at its next
	// request boundary. moveTried: a move was decided or is impossible; it
	// drains from now on. moved: a successor serves it now. Under mu.
	moveWanted, moveTried, moved bool
	// clientClosing: the last request asked for the close (Connection:
	// close, HTTP/1.0) and was read whole, with nothing after it.
	clientClosing bool
	rawless       bool // no socket of its own to do raw I/O on
	// pipelined: the client has sent a request before the previous answer
	// ended; answers then never defer their tail to the next wait, which
	// could not see such bytes arrive.
	pipelined bool
	// tailWritten: this wait began by writing a deferred tail.
	tailWritten bool
	// upgraded: a tunnel serves the socket now (httpupgrade.go).
	upgraded bool
	// finished: finish ran (owned by the serving goroutine).
	finished bool
	// endKnown: idleSince holds the reading of the last answer's end, and
	// the serving goroutine has not waited (for the client, a pump, a
	// migration) since. Owned by the serving goroutine.
	endKnown bool
}

// recoverPanic, deferred at the top of the serving goroutine, turns a panic
// into the close of this connection alone: logged once, its places freed by
// the deferred code on the way up, the connection closed and untracked.
func (c *httpConn) recoverPanic() {
	r := recover()
	if r == nil {
		return
	}
	logPanic(c.p.log.WithField("client", c.clientIP), "HTTP connection", r)
	defer func() {
		if recover() != nil { // finish itself failed: at least close
			_ = c.Close()
		}
	}()
	c.tail = nil
	c.finish(false)
}

// ensureRaw gives the serving goroutine its non-blocking I/O helper.
func (c *httpConn) ensureRaw() {
	if c.raw == nil && !c.rawless {
		c.raw = newRawIO(c.nc)
		c.rawless = c.raw == nil
	}
}

// drainIdleGrace is how long, counted from when it became idle, a connection
// that a drain finds idle may still send its next request; that request is
// answered with Connection: close. A keep-alive client that sends requests
// back to back is thus never cut between two of them; one idle longer than
// this is closed at once.
const drainIdleGrace = 500 * time.Millisecond

// Drain asks the connection to close at its next request boundary. An idle
// connection is woken so that it closes now (or after its grace).
func (c *httpConn) Drain() {
	c.mu.Lock()
	if c.draining || c.closed {
		c.mu.Unlock()
		return
	}
	c.draining = true
	if c.phase == phaseIdle {
		// Wakes a goroutine's idle wait at the end of its grace (at once if past it).
		_ = c.nc.SetReadDeadline(c.idleSince.Add(drainIdleGrace))
	}
	c.mu.Unlock()
	if c.p.idle.claim(c) {
		go c.serve(startWoken)
	}
}

// Close closes the connection now, aborting any request in flight.
func (c *httpConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.phase = phaseClosed
	cancel := c.dialCancel
	if c.closing != nil {
		close(c.closing)
	}
	if c.up != nil {
		// Under mu, so that the goroutine, which then discards the
		// connection (dropUpstream), cannot have pooled it meanwhile. On
		// the embedded socket: the connection is the goroutine's
		// (cluster.Conn).
		_ = c.up.Conn.SetDeadline(aLongTimeAgo())
	}
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if c.p.idle.claim(c) {
		c.finish(false) // idle without a goroutine: nobody else will
		return nil
	}
	return c.nc.Close()
}

func (c *httpConn) isDraining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// setPhase records where the request cycle is; the tracker hears of the
// changes between idle and active only.
func (c *httpConn) setPhase(ph phase) {
	c.mu.Lock()
	c.setPhaseLocked(ph)
	c.mu.Unlock()
}

func (c *httpConn) setPhaseLocked(ph phase) {
	if c.closed {
		return
	}
	c.phase = ph
	c.busy.Store(ph != phaseIdle)
}

// TrackedState is the connection's state for its tracker
// (conntrack.StateReporter): active from its accept until its first
// request ends, then idle between requests.
func (c *httpConn) TrackedState() conntrack.State {
	if c.busy.Load() {
		return conntrack.Active
	}
	return conntrack.Idle
}

// dropUpstream forgets the exchange's upstream connection, and reports
// whether the connection is closed (Close then set its abort deadline on
// the upstream one, which must not go back to the pool).
func (c *httpConn) dropUpstream() (closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = nil
	return c.closed
}

// setUpstream records the upstream connection of the request in flight (nil
// at its end) so that Close can abort it. It fails if the connection was
// closed meanwhile.
func (c *httpConn) setUpstream(up *cluster.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed && up != nil {
		return false
	}
	c.up = up
	return true
}

// dialContext returns a context that Close cancels, for a connect; done
// must be called when the connect returns.
func (c *httpConn) dialContext() (ctx context.Context, done func()) {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.closed {
		cancel()
	}
	c.dialCancel = cancel
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		c.dialCancel = nil
		c.mu.Unlock()
		cancel()
	}
}

// serve runs the connection's request cycle until it goes idle in the idle
// set, closes, or moves.
func (c *httpConn) serve(start int) {
	defer c.recoverPanic()
	c.ensureRaw()
	c.endKnown = false
	for {
		if c.r == c.w {
			ok, done := c.waitRequest(start)
			if done {
				return
			}
			if !ok {
				c.endIdle()
				return
			}
		} else {
			c.pipelined = true
			if c.atBoundaryMoves() {
				return
			}
		}
		start = startFresh
		keepAlive, responded := c.serveRequest()
		if c.upgraded {
			return
		}
		if !keepAlive {
			// A client that asked for the close and sent nothing more gets
			// a plain one, as nginx does; else the close lingers.
			c.finish(responded && !(c.clientClosing && !inputPending(c.nc)))
			return
		}
	}
}

// atBoundaryMoves: pipelined bytes are buffered at a request boundary; if a
// move is wanted the connection parks with them, and reports whether it moved.
func (c *httpConn) atBoundaryMoves() bool {
	c.mu.Lock()
	move := c.wantsMoveLocked()
	if move {
		c.setPhaseLocked(phaseIdle)
		c.idleSince = c.idleNow()
	}
	c.mu.Unlock()
	if !move || !c.park() {
		return false
	}
	c.finish(false)
	return true
}

// endIdle closes a connection whose idle wait ended without a request. A
// drained one closes gracefully: a request that raced with the close is
// read away, not answered by a reset. A moved one only closes this
// process's copy: no FIN, no linger.
func (c *httpConn) endIdle() {
	c.mu.Lock()
	linger := c.draining && !c.moved
	c.mu.Unlock()
	c.finish(linger)
}

// waitRequest is the idle state: it waits until the next request's first
// bytes are in c.in (ok), or the connection is to close (not ok: the client
// closed it, it idled out, a drain found it idle, it moved), or the idle
// poller holds it now (done: the goroutine lets go of it).
func (c *httpConn) waitRequest(start int) (ok, done bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, false
	}
	c.setPhaseLocked(phaseIdle)
	if start != startWoken {
		c.idleSince = c.idleNow()
	}
	c.mu.Unlock()
	if len(c.prefix) > 0 {
		c.takePrefix()
		return c.beginRequest(), false
	}
	if start == startReadable {
		// The poller saw bytes arrive: read them without waiting.
		c.getInput(c.p.bufSize)
		n, err := c.raw.tryRead(c.in.b[c.w:])
		if n > 0 {
			c.w += n
			c.p.rxBytes.Add(float64(n))
			return c.beginRequest(), false
		}
		c.releaseInput()
		if err != errWouldBlock {
			return false, false // EOF, reset, closed
		}
	}
	return c.waitBlocking(start != startWoken)
}

// idleNow is the start of an idle wait: the end of the answer before it if
// that was read (endKnown), else now.
func (c *httpConn) idleNow() time.Time {
	if c.endKnown {
		return c.idleSince
	}
	return c.p.clock.Now()
}

// waitBlocking waits with the goroutine, without a buffer, for the first
// bytes of the next request, until the connection is to move, drain, time
// out, or — after idleHandoff — go to the idle poller. fresh: idleSince
// was set just now.
func (c *httpConn) waitBlocking(fresh bool) (ok, done bool) {
	c.tailWritten = false
	if c.raw == nil && c.flushTail() != nil {
		return false, false
	}
	for ; ; fresh = false {
		move, handoff := c.armIdle(fresh)
		if move {
			if c.flushTail() != nil {
				return false, false
			}
			if c.park() {
				return false, false
			}
			continue // it stays, and drains from now on
		}
		counted := false
		if handoff {
			// When many connections wait with their goroutines already (a
			// wave of them going idle at once), this one goes to the poller
			// now, which also sees bytes that are already there.
			if counted = c.p.idle.waitHere(); !counted {
				if c.flushTail() != nil {
					return false, false
				}
				if c.p.idle.park(c) {
					return false, true
				}
			}
		}
		n, err := c.readIdle()
		if counted {
			c.p.idle.waited()
		}
		if c.tail != nil {
			// The wait ended before it wrote the tail (a deadline already
			// past, a full socket buffer): written now, waiting if need be.
			if c.flushTail() != nil {
				return false, false
			}
			if n == 0 && (err == errTailPending || err == nil) {
				continue
			}
		}
		if n > 0 {
			return c.beginRequest(), false
		}
		if !isTimeout(err) {
			return false, false // EOF, reset, closed
		}
		c.mu.Lock()
		move, draining := c.wantsMoveLocked(), c.draining
		c.mu.Unlock()
		if c.tailWritten && c.raw != nil {
			// Bytes may have come in before the wait began, unseen by it:
			// a pipelining client. Read them now, and defer no tail again.
			c.tailWritten = false
			c.getInput(c.p.bufSize)
			if n, _ := c.raw.tryRead(c.in.b[c.w:]); n > 0 {
				c.w += n
				c.p.rxBytes.Add(float64(n))
				c.pipelined = true
				return c.beginRequest(), false
			}
			c.releaseInput()
		}
		switch {
		case move:
			continue
		case draining:
			// Drained at a request boundary and the grace is over. A request
			// the client has sent meanwhile is served, with Connection:
			// close; otherwise the connection closes.
			if !inputPending(c.nc) {
				return false, false
			}
			c.getInput(c.p.bufSize)
			if _, err := c.read(time.Now().Add(c.p.headerTimeout)); err != nil {
				c.releaseInput()
				return false, false
			}
			return c.beginRequest(), false
		case handoff && c.p.clock.Since(c.idleSince) < c.p.handoff:
			// Woken before its handoff by a deadline armed for an earlier
			// wait (armIdle kept it): armed again, exactly, as the loop
			// goes on (not fresh).
			continue
		case handoff && c.p.idle.park(c):
			return false, true
		case !handoff:
			return false, false // idle timeout
		}
		// Not handed off: it waits on here until its idle timeout.
	}
}

// readIdle waits for the next request's first bytes and reads them into
// c.in, which it takes only once they are there.
func (c *httpConn) readIdle() (int, error) {
	defer func() { c.endKnown = false }() // it may have waited
	if c.raw != nil {
		n, err := c.raw.waitRead(c)
		if n > 0 {
			c.p.rxBytes.Add(float64(n))
		}
		return n, err
	}
	n, err := c.nc.Read(c.peek[:])
	if n > 0 {
		c.p.rxBytes.Add(float64(n))
		c.getInput(c.p.bufSize)
		c.in.b[0] = c.peek[0]
		c.w = 1
	}
	return n, err
}

// readReady reads what arrived into c.in, taking the buffer for it, or
// reports errWouldBlock without keeping one.
func (c *httpConn) readReady(fd int) (int, error) {
	if x := c.tail; x != nil {
		// The last answer's tail, written after the runtime reset the
		// socket's readiness: the next request cannot come before it, so
		// its arrival is seen, and no read is spent on the empty socket.
		for len(x.ob) > 0 {
			n, err := sysWrite(fd, x.ob)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return 0, errTailPending // the waiting write finishes it
			}
			c.p.txBytes.Add(float64(n))
			x.ob = x.ob[n:]
		}
		c.tail = nil
		x.deferred = false
		c.endRequest(x, true)
		c.tailWritten = true
		return 0, errWouldBlock
	}
	c.getInput(c.p.bufSize)
	n, err := sysRead(fd, c.in.b[c.w:])
	switch {
	case err == unix.EAGAIN:
		c.releaseInput()
		return 0, errWouldBlock
	case err != nil:
		c.releaseInput()
		return 0, err
	case n == 0:
		c.releaseInput()
		return 0, io.EOF
	}
	c.w += n
	return n, nil
}

// armIdle sets the deadline of the idle wait — the drain grace, the handoff
// to the idle poller, or the idle timeout — or reports that the connection
// is to move now instead. Under mu, so that a Migrate or Drain racing with
// it either is seen here or sets its own deadline after this one. fresh:
// idleSince was set just now, so the wait has not idled past the handoff.
func (c *httpConn) armIdle(fresh bool) (move, handoff bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wantsMoveLocked() {
		return true, false
	}
	deadline := c.idleSince.Add(c.p.idleTimeout)
	switch {
	case c.draining:
		deadline = c.idleSince.Add(drainIdleGrace)
	case c.raw != nil && c.p.idleTimeout > c.p.handoff && (fresh || c.p.clock.Since(c.idleSince) < c.p.handoff):
		deadline, handoff = c.idleSince.Add(c.p.handoff), true
		// A keep-alive connection busy with requests arms the same
		// deadline a little later at every wait: the one on the socket is
		// kept while it is at least half a handoff away. If the wait
		// outlives it, it wakes before its handoff, and waitBlocking arms
		// the exact one: early wakes at most, never a late or a lost one.
		if a := c.raw.handoffArmed; fresh && !a.IsZero() && !a.After(deadline) && a.Sub(c.idleSince) >= c.p.handoff/2 {
			return false, true
		}
	}
	_ = c.nc.SetReadDeadline(deadline)
	if c.raw != nil {
		c.raw.handoffArmed = time.Time{}
		if handoff {
			c.raw.handoffArmed = deadline
		}
	}
	return false, handoff
}

// forgetHandoff is called before a read deadline other than the idle
// wait's is set on the socket: the next wait arms its own.
func (c *httpConn) forgetHandoff() {
	if c.raw != nil {
		c.raw.handoffArmed = time.Time{}
	}
}

// beginRequest leaves idle for reading.
func (c *httpConn) beginRequest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.setPhaseLocked(phaseReading)
	return true
}

// takePrefix moves what a predecessor had buffered into c.in.
func (c *httpConn) takePrefix() {
	c.getInput(max(c.p.bufSize, len(c.prefix)))
	c.w = copy(c.in.b, c.prefix)
	c.prefix = nil
}

// getInput makes sure the connection has a read buffer of at least n bytes.
func (c *httpConn) getInput(n int) {
	if c.in == nil {
		c.in = c.p.bufs.get(n)
		c.r, c.w = 0, 0
	}
}

// releaseInput gives the read buffer back if it holds nothing unparsed.
func (c *httpConn) releaseInput() {
	if c.in != nil && c.r == c.w {
		c.p.bufs.put(c.in)
		c.in, c.r, c.w = nil, 0, 0
	}
}

// compactInput moves the unparsed bytes to the front of the buffer, or
// gives the buffer back if there are none: done at every request boundary.
func (c *httpConn) compactInput() {
	if c.in == nil {
		return
	}
	if c.r == c.w {
		c.releaseInput()
		return
	}
	if c.r > 0 {
		c.w = copy(c.in.b, c.in.b[c.r:c.w])
		c.r = 0
	}
}

// growInput makes room for n more bytes after c.w, moving to a larger
// buffer if needed.
func (c *httpConn) growInput(n int) {
	if c.w+n <= len(c.in.b) {
		return
	}
	if c.r > 0 && c.w-c.r+n <= len(c.in.b) {
		c.w = copy(c.in.b, c.in.b[c.r:c.w])
		c.r = 0
		return
	}
	nb := c.p.bufs.get(c.w - c.r + n)
	c.w = copy(nb.b, c.in.b[c.r:c.w])
	c.r = 0
	c.p.bufs.put(c.in)
	c.in = nb
}

// read reads more input into c.in after c.w, waiting until deadline.
func (c *httpConn) read(deadline time.Time) (int, error) {
	if c.raw != nil {
		n, err := c.raw.tryRead(c.in.b[c.w:])
		if n > 0 {
			c.w += n
			c.p.rxBytes.Add(float64(n))
			return n, nil
		}
		if err != errWouldBlock {
			return 0, err
		}
	}
	c.forgetHandoff()
	_ = c.nc.SetReadDeadline(deadline)
	n, err := c.nc.Read(c.in.b[c.w:])
	c.endKnown = false
	if n > 0 {
		c.w += n
		c.p.rxBytes.Add(float64(n))
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}

// write writes b to the client: at once if the socket takes it all, else
// waiting, at most the idle timeout, for the client to read.
func (c *httpConn) write(b []byte) error {
	if c.raw != nil {
		n, err := c.raw.tryWrite(b)
		if n > 0 {
			c.p.txBytes.Add(float64(n))
			b = b[n:]
		}
		if len(b) == 0 {
			return nil
		}
		if err != errWouldBlock {
			return fmt.Errorf("write: %w", err)
		}
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.p.idleTimeout))
	n, err := c.nc.Write(b)
	c.endKnown = false
	if n > 0 {
		c.p.txBytes.Add(float64(n))
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// finish closes the connection — with a linger after a response, so that
// bytes the client still sends do not turn into a reset before it read the
// answer — and stops tracking it.
func (c *httpConn) finish(linger bool) {
	if c.finished {
		return
	}
	c.finished = true
	if x := c.tail; x != nil { // closing before its tail went out
		c.tail = nil
		c.endRequest(x, true)
	}
	c.mu.Lock()
	moved := c.moved
	c.mu.Unlock()
	c.p.idle.unregister(c, moved)
	if linger {
		c.lingerClose()
	} else {
		_ = c.Close()
	}
	_ = c.nc.Close()
	if c.in != nil {
		c.p.bufs.put(c.in)
		c.in, c.r, c.w = nil, 0, 0
	}
	c.remove()
	c.p.idle.reclaim.left()
}

// lingerClose closes after a response: our FIN first, then reading away what
// the client may still send until its FIN or a short deadline, so that late
// bytes do not make the kernel reset the connection before the client has
// read the response.
func (c *httpConn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.p.linger))
		var sink [512]byte
		buf := sink[:]
		if c.in != nil {
			buf = c.in.b
		}
		for read := 0; read < maxDiscard; {
			n, err := c.nc.Read(buf)
			read += n
			if err != nil {
				break
			}
		}
	}
	_ = c.Close()
}

// expire closes a connection the idle poller found idle past the idle timeout.
func (c *httpConn) expire() { c.finish(false) }

func (c *httpConn) String() string {
	return fmt.Sprintf("http %s %s", c.p.name, remoteString(c.nc))
}

// errClosed: the connection was closed while a request was in flight.
var errClosed = errors.New("connection closed")

// errTailPending: a deferred answer tail did not go out whole from the wait.
var errTailPending = errors.New("answer tail not written")

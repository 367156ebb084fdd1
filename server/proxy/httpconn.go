package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/server/conntrack"
)

// phase is where an HTTP connection is in its request cycle:
//
//	idle → reading → proxying → writing → idle …
//
// Idle is the request boundary: the only point where a drain closes the
// connection (and where a later migration may hand it over).
type phase int

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

// httpConn is one downstream HTTP/1.x connection, served by one goroutine that
// owns br and bw.
type httpConn struct {
	p        *httpProxy
	nc       net.Conn // the accepted socket itself
	rd       *connReader
	br       *bufio.Reader
	bw       *bufio.Writer
	buf      []byte // response body copy buffer
	clientIP string // "" for unix sockets
	log      *logrus.Entry
	remove   func()

	// ctx ends when the connection is closed, aborting upstream calls.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	phase     phase
	idleSince time.Time // when the connection last became idle
	draining  bool
	closed    bool
	// moveWanted: Migrate was called, the connection moves at its next
	// request boundary. moveTried: a move was decided or is impossible; it
	// drains from now on. moved: a successor serves it now.
	moveWanted, moveTried, moved bool

	// requests counts the requests read on this connection, in this process
	// and its predecessors. Owned by the connection goroutine.
	requests uint64
}

// drainIdleGrace is how long, counted from when it became idle, a connection
// that a drain finds idle may still send its next request; that request is
// answered with Connection: close. A keep-alive client that sends requests
// back to back is thus never cut between two of them; one idle longer than
// this is closed at once.
const drainIdleGrace = 500 * time.Millisecond

// Drain asks the connection to close at its next request boundary. An idle
// connection is woken so that it closes now.
func (c *httpConn) Drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining || c.closed {
		return
	}
	c.draining = true
	if c.phase == phaseIdle {
		// Wakes the idle wait at the end of its grace (at once if past it).
		_ = c.nc.SetReadDeadline(c.idleSince.Add(drainIdleGrace))
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
	c.mu.Unlock()
	c.cancel()
	return c.nc.Close()
}

func (c *httpConn) isDraining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

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
	st := conntrack.Active
	if ph == phaseIdle {
		st = conntrack.Idle
	}
	c.p.tracker.SetState(c, st)
}

func (c *httpConn) extendReadDeadline() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.p.idleTimeout))
}

func (c *httpConn) expireReadDeadline() { _ = c.nc.SetReadDeadline(aLongTimeAgo()) }

// serve runs the request cycle until the connection is to be closed.
func (c *httpConn) serve() {
	linger := false
	defer func() {
		if linger {
			c.lingerClose()
		} else {
			_ = c.Close()
		}
		c.remove()
	}()
	for {
		if !c.awaitRequest() {
			// A drained idle connection closes gracefully too: a request
			// that raced with the close is read away, not answered by a reset.
			// A moved one only closes this process's copy: no FIN, no linger.
			c.mu.Lock()
			linger = c.draining && !c.moved
			c.mu.Unlock()
			return
		}
		keepAlive, responded := c.serveRequest()
		if !keepAlive {
			linger = responded
			return
		}
	}
}

// awaitRequest is the idle state: it waits for the first byte of the next
// request and moves to reading. It returns false when the connection is to be
// closed: the client closed it, it idled out, a drain found it idle, or it
// moved to a successor.
func (c *httpConn) awaitRequest() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.setPhaseLocked(phaseIdle)
	c.idleSince = time.Now()
	c.mu.Unlock()

	for {
		if c.armIdle() {
			if c.park() {
				return false
			}
			continue // it stays, and drains from now on
		}
		_, err := c.br.Peek(1)
		if err == nil {
			return c.beginRequest()
		}
		if !isTimeout(err) {
			return false // EOF, reset, closed
		}
		c.mu.Lock()
		move, draining := c.wantsMoveLocked(), c.draining
		c.mu.Unlock()
		if move {
			continue
		}
		if !draining {
			return false // idle timeout
		}
		// Drained at a request boundary and the grace is over. A request the
		// client has sent meanwhile (buffered here or waiting in the socket) is
		// served, with Connection: close; otherwise the connection closes.
		if c.br.Buffered() > 0 || inputPending(c.nc) {
			return c.beginRequest()
		}
		return false
	}
}

// armIdle sets the deadline of the idle wait, or reports that the connection
// is to move now instead. Under mu, so that a Migrate or Drain racing with it
// either is seen here or sets its own deadline after this one.
func (c *httpConn) armIdle() (move bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wantsMoveLocked() {
		return true
	}
	if c.draining {
		_ = c.nc.SetReadDeadline(c.idleSince.Add(drainIdleGrace))
	} else {
		_ = c.nc.SetReadDeadline(c.idleSince.Add(c.p.idleTimeout))
	}
	return false
}

// beginRequest leaves idle for reading, with the head read bounded by the idle timeout.
func (c *httpConn) beginRequest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.setPhaseLocked(phaseReading)
	// Overrides an expired deadline a concurrent Drain may have set.
	_ = c.nc.SetReadDeadline(time.Now().Add(c.p.idleTimeout))
	return true
}

// serveRequest reads one request, answers it, and reports whether the
// connection may carry another, and whether any response was written.
func (c *httpConn) serveRequest() (keepAlive, responded bool) {
	c.rd.limit(maxHeaderBytes + int64(c.br.Size()))
	req, err := http.ReadRequest(c.br)
	c.rd.unlimit()
	if err != nil {
		return false, c.badRequest(err)
	}
	c.requests++
	c.setPhase(phaseProxying)

	if req.ProtoMajor != 1 {
		c.answerLocal(req, noClusterLabel, http.StatusHTTPVersionNotSupported, "unsupported HTTP version\n", true)
		return false, true
	}
	if req.ProtoMinor >= 1 && req.Host == "" {
		c.answerLocal(req, noClusterLabel, http.StatusBadRequest, "missing Host header\n", true)
		return false, true
	}

	res, ok := c.p.routes.match(req.Host, req.URL.Path, req.Header)
	switch {
	case !ok:
		return c.answerLocal(req, noClusterLabel, http.StatusNotFound, "no route\n", false), true
	case res.direct != nil:
		return c.answerLocal(req, noClusterLabel, res.direct.Status, res.direct.Body, false), true
	default:
		return c.proxyRequest(req, res)
	}
}

// badRequest answers a request head that could not be read, if it is worth
// answering, and reports whether it wrote anything.
func (c *httpConn) badRequest(err error) bool {
	var status int
	switch {
	case c.rd.hitLimit || errors.Is(err, errHeaderTooLarge):
		status = http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), isTimeout(err):
		return false // the client went away or stalled: nobody to answer
	default:
		var ne *net.OpError
		if errors.As(err, &ne) {
			return false
		}
		status = http.StatusBadRequest
	}
	c.log.WithError(err).Debug("bad request")
	c.setPhase(phaseWriting)
	c.p.countRequest(noClusterLabel, status)
	_ = c.writeSimple(status, false, "", http.StatusText(status)+"\n", true)
	return true
}

// answerLocal answers req from the proxy itself (no route, direct response,
// or an upstream failure before any response byte) and reports whether the
// connection may carry another request.
func (c *httpConn) answerLocal(req *http.Request, clusterLabel string, status int, body string, forceClose bool) bool {
	c.setPhase(phaseWriting)
	// A client waiting for 100-continue never sent its body: what follows on
	// the wire may not be what the body's framing says.
	closeAfter := forceClose || req.Close || c.isDraining() || expectsContinue(req)
	c.p.countRequest(clusterLabel, status)
	if err := c.writeSimple(status, req.Method == http.MethodHead, req.Proto, body, closeAfter); err != nil {
		return false
	}
	if closeAfter {
		return false
	}
	return c.discardBody(req.Body)
}

// discardBody reads away what is left of a request body, within limits, so
// that the next request can be read. It reports success.
func (c *httpConn) discardBody(body io.Reader) bool {
	if body == nil || body == http.NoBody {
		return true
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(min(discardTimeout, c.p.idleTimeout)))
	_, err := io.CopyN(io.Discard, body, maxDiscard+1)
	return err == io.EOF
}

// lingerClose closes after a response: our FIN first, then reading away what
// the client may still send until its FIN or a short deadline, so that late
// bytes do not make the kernel reset the connection before the client has
// read the response.
func (c *httpConn) lingerClose() {
	_ = c.bw.Flush()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.p.linger))
		_, _ = io.CopyN(io.Discard, c.rd, maxDiscard)
	}
	_ = c.Close()
}

func expectsContinue(req *http.Request) bool {
	return req.Body != http.NoBody && req.ProtoAtLeast(1, 1) &&
		strings.EqualFold(strings.TrimSpace(req.Header.Get("Expect")), "100-continue")
}

func (c *httpConn) String() string {
	return fmt.Sprintf("http %s %s", c.p.name, remoteString(c.nc))
}

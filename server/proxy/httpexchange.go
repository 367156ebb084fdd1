package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
	"github.com/mosnlite/mosnlite/service/stats"
)

var (
	errHeadTooLarge    = errors.New("request head too large")
	errHeadTimeout     = errors.New("request head not complete within the header timeout")
	errBodyTooLarge    = errors.New("request body too large")
	errClientGone      = errors.New("client went away")
	errStaleConn       = errors.New("pooled upstream connection closed before answering")
	errUpstreamTimeout = errors.New("upstream timeout")
	errShortBody       = errors.New("upstream body shorter than its length")
)

// exchange is one request's state, pooled across requests: the parsed
// heads, the request body's framing, the upstream connection, and the
// buffers the exchange writes through. Nothing of it outlives the request
// but its buffers.
type exchange struct {
	req http1.Request
	// held is the read buffer the request was parsed in, taken from the
	// connection at the request boundary (carryOver) and given back at the
	// exchange's end: until then the observers (the access log) read the
	// request's fields, which are slices of it.
	held *buffer
	// path is the request's path normalised (normalisePath): what routes
	// match and rewrites work on.
	path  []byte
	info  RequestInfo
	tried []*cluster.Host
	// What the metrics record at the end (httpmetrics.go): the downstream
	// series of the answer; the cluster of an upstream request, whether it
	// is in flight, and the host and times of its last attempt.
	series        *stats.HTTPRequestSeries
	upCl          *cluster.Cluster
	upActive      bool
	upHost        *cluster.Host
	upSent, upEnd time.Time
	// headBy bounds the wait for the answer's head on an exchange without
	// a body pump, whose socket may keep an earlier deadline
	// (cluster.Conn.KeepReadDeadline, earlyTimeout); zero otherwise.
	headBy time.Time

	// clk is the proxy's clock; mark, while the request is dispatched
	// upstream, a reading of it that the next step may use instead of its
	// own (see reading): the pool's idle check, the time sent.
	clk  clock
	mark time.Time

	outBuf *buffer
	ob     []byte // what goes out next: a composed head, framed body bytes
	// deferred: ob holds the answer's last bytes, for the connection's next
	// wait to write (flushEnd).
	deferred bool
	// upgrade: the request asks to switch protocols (httpupgrade.go).
	upgrade bool
	staged  []byte // a large request body part already buffered, sent after ob
	iov     [2][]byte

	upIn // upstream reads, and the response head parsed in them

	up      *cluster.Conn
	body    reqBody
	respDec http1.ChunkedDecoder

	// What the request was routed to, and what its routing needs on the
	// way: header operations resolved into hbuf, extra head fields of a
	// local answer (a redirect's Location), the hosts earlier tries used,
	// whether the request can be sent again (its body was whole before it
	// went out), whether it holds a retry of the cluster's budget, and
	// the cap of one upstream read or write (conn_buffer_limit_bytes).
	res       routeResult
	hbuf      []byte
	resolved  []resolvedField
	extraHead []byte
	avoid     []*cluster.Host
	replay    bool
	retryHeld bool
	bufLimit  int
	// The request body pump: a goroutine that streams a body which had not
	// fully arrived with its head, while the exchange waits for the answer.
	pump     sync.WaitGroup
	pumping  bool
	pumpStop atomic.Bool
	pumpDone atomic.Bool
	pumpErr  error         // set before pumpDone
	pumpTo   *cluster.Conn // where the pump writes
	// headWait, while the response head is awaited and a pump streams the
	// body, is the route's timeout, which the pump's end starts (MOSN
	// counts it from the request gone upstream whole). Under headMu.
	headMu   sync.Mutex
	headWait time.Duration
	pb       []byte // the pump's framed output
	pbBuf    *buffer
}

func (p *httpProxy) getExchange() *exchange {
	if v := p.exchanges.Get(); v != nil {
		return v.(*exchange)
	}
	x := &exchange{outBuf: p.bufs.get(httpReadBufSize), upIn: upIn{upBuf: p.bufs.get(upstreamBufSize)}, clk: p.clock}
	x.ob = x.outBuf.b[:0]
	x.tried = make([]*cluster.Host, 0, 4)
	return x
}

func (p *httpProxy) putExchange(x *exchange) {
	x.req.Reset()
	x.resp.Reset()
	x.info = RequestInfo{}
	x.series, x.upCl, x.upActive, x.upHost, x.upSent, x.upEnd = nil, nil, false, nil, time.Time{}, time.Time{}
	x.mark = time.Time{}
	clear(x.tried)
	x.tried = x.tried[:0]
	x.ob, x.staged, x.iov, x.deferred, x.upgrade = x.outBuf.b[:0], nil, [2][]byte{}, false, false
	x.ur, x.uw = 0, 0
	x.up = nil
	x.res, x.extraHead, x.replay, x.retryHeld, x.bufLimit = routeResult{}, nil, false, false, 0
	x.hbuf, x.resolved = x.hbuf[:0], x.resolved[:0]
	clear(x.avoid)
	x.avoid = x.avoid[:0]
	if cap(x.hbuf) > 16<<10 {
		x.hbuf = nil
	}
	p.bufs.put(x.body.buf)
	p.bufs.put(x.held)
	x.held = nil
	x.body = reqBody{dec: x.body.dec}
	x.pumping, x.pumpErr, x.pumpTo, x.headWait = false, nil, nil, 0
	x.pumpStop.Store(false)
	x.pumpDone.Store(false)
	if x.pbBuf != nil {
		p.bufs.put(x.pbBuf)
		x.pbBuf, x.pb = nil, nil
	}
	if len(x.upBuf.b) != upstreamBufSize { // grown for a large response head
		p.bufs.put(x.upBuf)
		x.upBuf = p.bufs.get(upstreamBufSize)
	}
	if len(x.req.Headers) > 256 || len(x.resp.Headers) > 256 {
		x.req.Headers, x.resp.Headers = nil, nil
	}
	p.exchanges.Put(x)
}

// serveRequest reads one request, answers it, and reports whether the
// connection may carry another, and whether any response was written.
func (c *httpConn) serveRequest() (keepAlive, responded bool) {
	x := c.p.getExchange()
	x.info.Listener = c.p.name
	x.info.Protocol, x.info.Scheme = ProtocolHTTP1, c.scheme
	x.info.Downstream = c.clientIP
	x.info.Remote, x.info.Local, x.info.ConnID = c.nc.RemoteAddr(), c.nc.LocalAddr(), c.id
	x.info.Start = x.clk.Now()
	c.endKnown = false
	c.p.metrics.Active().Inc()
	keepAlive, responded = c.exchange(x)
	c.clientClosing = !keepAlive && responded && x.req.Close && x.body.done && c.r == c.w
	if keepAlive {
		c.carryOver(x)
	}
	if x.deferred {
		if keepAlive && c.r == c.w {
			// The answer's last bytes go out from inside the wait for the
			// next request (see readReady), which then needs no read of
			// the empty socket; the exchange ends there.
			c.tail = x
			return keepAlive, responded
		}
		x.deferred = false
		if err := c.flush(x); err != nil {
			keepAlive = false
		}
	}
	c.endRequest(x, false)
	return keepAlive, responded
}

// endRequest records the request's end and recycles its exchange. The end
// is the reading taken when the upstream's answer was read whole (kept in
// idleSince, see endKnown) if the serving goroutine has not waited since:
// only writes that the socket took at once came after it. idle: the
// connection is in its idle wait already (a deferred tail), whose
// idleSince is not to be touched.
func (c *httpConn) endRequest(x *exchange, idle bool) {
	x.info.BytesReceived = x.body.read
	var end time.Time
	if c.endKnown && !c.idleSince.Before(x.info.Start) {
		end = c.idleSince
	} else {
		end = x.reading()
		if !idle { // the idle wait that follows counts from it
			c.idleSince, c.endKnown = end, true
		}
	}
	x.info.Duration = end.Sub(x.info.Start)
	c.p.observeRequest(x)
	for _, observe := range c.p.observers {
		observe(&x.info)
	}
	c.p.putExchange(x)
}

// reading reads the clock for x: a time with its monotonic part, made
// from the request's start and one monotonic read (time.Since), where
// time.Now would read the wall clock too.
func (x *exchange) reading() time.Time {
	return x.info.Start.Add(x.clk.Since(x.info.Start))
}

// markNow returns x.mark, the latest reading of the dispatch, taking one
// if there is none.
func (x *exchange) markNow() time.Time {
	if x.mark.IsZero() {
		x.mark = x.reading()
	}
	return x.mark
}

// flushTail writes a deferred answer tail now and ends its exchange.
func (c *httpConn) flushTail() error {
	x := c.tail
	if x == nil {
		return nil
	}
	c.tail = nil
	x.deferred = false
	err := c.flush(x)
	c.endRequest(x, true)
	return err
}

// flushEnd writes the last bytes of an answer, or, on a connection that
// can, leaves them for the wait for the next request to write. That wait
// cannot see bytes that came in before it began — a request sent before
// this answer ended, which only a pipelining client does — so it is used
// only where the handoff to the idle poller, which does see them, follows
// soon; a connection seen pipelining never uses it again.
func (c *httpConn) flushEnd(x *exchange) error {
	if c.raw != nil && !c.pipelined && c.p.idleTimeout > c.p.handoff && len(x.ob) > 0 {
		x.deferred = true
		return nil
	}
	return c.flush(x)
}

// carryOver keeps, at the request boundary, the bytes read past the end of
// the request (the next one's beginning) in a buffer of the connection's,
// and hands the buffer the request was parsed in to the exchange, which
// gives it back at its end: neither a compaction nor another connection
// may overwrite the request's bytes before its observers have read them.
func (c *httpConn) carryOver(x *exchange) {
	b := &x.body
	var rest []byte
	if c.in != nil {
		rest = c.in.b[c.r:c.w]
		x.held, c.in = c.in, nil
	}
	c.r, c.w = 0, 0
	if len(rest) == 0 && b.lo == b.hi {
		return
	}
	c.getInput(max(c.p.bufSize, len(rest)+b.hi-b.lo))
	c.w = copy(c.in.b, rest)
	if b.lo < b.hi {
		c.w += copy(c.in.b[c.w:], b.buf.b[b.lo:b.hi])
		b.lo = b.hi
	}
}

func (c *httpConn) exchange(x *exchange) (keepAlive, responded bool) {
	if err := c.readHead(x); err != nil {
		return false, c.refuse(x, err)
	}
	c.requests++
	c.setPhase(phaseProxying)
	req := &x.req
	x.info.Request = req
	x.body.init(req, c.p.maxBodyBytes)
	switch {
	case req.IsMethod(http.MethodConnect):
		return c.answerLocal(x, noClusterLabel, http.StatusMethodNotAllowed, "CONNECT is not supported\n", true), true
	case c.p.maxBodyBytes > 0 && req.ContentLength > c.p.maxBodyBytes:
		x.info.Flags |= FlagBadRequest | FlagRequestTooLarge
		return c.answerLocal(x, noClusterLabel, http.StatusRequestEntityTooLarge, "request body too large\n", true), true
	}
	path, ok := normalisePath(pathOf(req.Path))
	if !ok {
		x.info.Flags |= FlagBadRequest
		return c.answerLocal(x, noClusterLabel, http.StatusBadRequest, "path climbs above the root\n", true), true
	}
	x.path = path
	res, ok := c.p.routes.match(req.Host, req.Method, path, req.Headers)
	switch {
	case !ok:
		x.info.Flags |= FlagNoRoute
		return c.answerLocal(x, noClusterLabel, http.StatusNotFound, "no route\n", false), true
	case res.direct != nil:
		x.info.Flags |= FlagLocalResponse
		return c.answerLocal(x, noClusterLabel, res.direct.Status, res.direct.Body, false), true
	case res.redirect != nil:
		x.info.Flags |= FlagLocalResponse
		x.extraHead = append(x.extraHead[:0:0], "Location: "...)
		x.extraHead = res.redirect.appendLocation(x.extraHead, req)
		x.extraHead = append(x.extraHead, "\r\n"...)
		return c.answerLocal(x, noClusterLabel, res.redirect.code, "", false), true
	}
	// An upgrade (a WebSocket handshake) goes upstream with its Upgrade
	// and Connection; a 101 answer makes the connection a tunnel
	// (httpupgrade.go).
	if x.upgrade = upgradeRequested(req); x.upgrade && !res.upgradeAllowed(req.Upgrade) {
		return c.refuseUpgrade(x, res), true
	}
	return c.proxy(x, res)
}

// readHead reads until a whole request head is buffered and parses it, in
// place. The head may take at most maxHeadBytes, and must be complete
// headerTimeout after its first byte.
func (c *httpConn) readHead(x *exchange) error {
	deadline := x.info.Start.Add(c.p.headerTimeout)
	limit := c.p.maxHeadBytes
	skipped, from := 0, 0
	for {
		if c.r < c.w {
			if from == 0 {
				n := http1.SkipEmptyLines(c.in.b[c.r:c.w])
				c.r += n
				skipped += n
			}
			buf := c.in.b[c.r:c.w]
			// A CR whose LF has not arrived yet may still be an empty line.
			if len(buf) > 0 && !(from == 0 && buf[0] == '\r') {
				end, next := http1.HeadEnd(buf, from)
				if end >= 0 {
					if skipped+end > limit {
						return errHeadTooLarge
					}
					head := buf[:end]
					c.r += end
					x.info.HeadBytes = skipped + end
					return http1.ParseRequest(head, &x.req, c.p.maxHeaders)
				}
				from = next
			}
		}
		if skipped+c.w-c.r >= limit {
			return errHeadTooLarge
		}
		if c.w == len(c.in.b) {
			c.growInput(min(3*len(c.in.b), limit+2-(c.w-c.r)))
		}
		if _, err := c.read(deadline); err != nil {
			if isTimeout(err) {
				return errHeadTimeout
			}
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
}

// refuse answers a request head that could not be read, if there is anyone
// to answer, and reports whether it wrote anything. The connection closes.
func (c *httpConn) refuse(x *exchange, err error) bool {
	var status int
	var pe *http1.Error
	switch {
	case errors.Is(err, errHeadTooLarge):
		status = http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errHeadTimeout):
		status = http.StatusRequestTimeout
	case errors.As(err, &pe):
		status = pe.Status
	default:
		x.info.Flags |= FlagDownstreamReset
		return false // the client went away: nobody to answer
	}
	x.info.Flags |= FlagBadRequest
	c.p.log.WithError(err).WithField("client", c.clientIP).Debug("bad request")
	c.answerLocal(x, noClusterLabel, status, http.StatusText(status)+"\n", true)
	return true
}

// proxy sends the request to the routed cluster and streams the answer back.
func (c *httpConn) proxy(x *exchange, res routeResult) (keepAlive, responded bool) {
	x.info.Cluster = res.cluster
	x.res = res
	cl := c.p.clusters.Get(res.cluster)
	if cl == nil || cl.HealthyCount() == 0 {
		if cl != nil {
			x.toUpstream(cl, false)
		}
		x.info.Flags |= FlagNoHealthyUpstream
		return c.answerLocal(x, res.cluster, http.StatusServiceUnavailable, "no healthy upstream\n", false), true
	}
	if err := cl.StartRequest(); err != nil {
		// The cluster's max_requests are in flight.
		x.toUpstream(cl, false)
		c.p.log.WithError(err).Debug("upstream request refused")
		x.info.Flags |= FlagUpstreamOverflow
		return c.answerLocal(x, res.cluster, http.StatusServiceUnavailable, "upstream overflow\n", false), true
	}
	defer func() {
		if x.retryHeld {
			cl.EndRetry()
			x.retryHeld = false
		}
		cl.EndRequest()
	}()
	x.bufLimit = cl.BufferLimit()
	c.composeRequest(x)
	// The body bytes that came with the head are decoded now: a framing
	// error in them is answered before anything goes upstream.
	if err := c.bodyStep(x, bodyStage, time.Time{}); err != nil {
		return c.bodyRefused(x, res.cluster, err)
	}
	// Only a request that goes out whole in the first write can be sent
	// again: a body streamed after it is gone.
	x.replay = x.body.done
	if x.req.Expect100 && !x.body.done {
		// Answered here, so that the client sends its body; the upstream
		// sees no Expect.
		if err := c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
			return false, false
		}
	}
	x.toUpstream(cl, true)
	// One reading for the dispatch: the route's deadline, the client
	// watch, the pool's idle check and the time sent count from it.
	x.mark = time.Time{}
	now := x.markNow()
	var watch *clientWatch
	if x.body.done {
		watch = c.watchClient(now)
	}
	up, err := c.sendRetrying(x, cl, res.action, now)
	watch.stop()
	if err != nil {
		return c.upstreamFailed(x, res.cluster, err)
	}
	if x.resp.Status == http.StatusSwitchingProtocols {
		return c.switchProtocols(x, cl, up)
	}
	return c.forwardResponse(x, cl, up)
}

// retryBackoff is MOSN's pause before a retry.
const retryBackoff = 10 * time.Millisecond

// sendRetrying sends the request and returns the upstream connection with
// the response head read, trying again as the route's retry policy says
// (MOSN's retry_on): on a 5xx (or one of its status_codes), a reset before
// the answer, a per-try timeout (retry_timeout) or connect failures on
// every host — at most num_retries times, within the route's timeout
// (MOSN's global timeout: till the response head, every try included), and
// only while the cluster's retry budget allows and the request can be sent
// again whole. Without a policy, as in MOSN, connect failures on every
// host are still retried, defaultRetries times, within the same limits
// (a failed connect sent nothing, so any request may go again). An answer
// not retried goes to the client as it came.
func (c *httpConn) sendRetrying(x *exchange, cl *cluster.Cluster, a *routeAction, now time.Time) (*cluster.Conn, error) {
	timeout := c.p.upstreamTimeout
	var policy *retryPolicy
	if a != nil {
		if a.timeout > 0 {
			timeout = a.timeout
		}
		policy = a.retry
	}
	deadline := now.Add(timeout)
	// Without a retry policy a connect failure is still retried, as MOSN
	// retries a connection failure on every route (3 times by default).
	left := defaultRetries
	if policy != nil {
		left = policy.retries
	}
	for {
		try, perTry := deadline, false
		if policy != nil && policy.perTry > 0 {
			if t := x.markNow().Add(policy.perTry); t.Before(deadline) {
				try, perTry = t, true
			}
		}
		up, err := c.send(x, cl, try)
		if err == nil && policy == nil {
			return up, nil // an answer, and no policy that could retry it
		}
		connectFailed := false // nothing was sent
		if err != nil {
			var ce *cluster.ConnectError
			connectFailed = errors.As(err, &ce)
		}
		// The clock is read only for an answer or a failure that would be
		// retried.
		again := left > 0 && (x.replay || connectFailed) && !c.closedNow()
		switch {
		case err == nil && (!again || !policy.retriesStatus(x.resp.Status)): // policy is set: see above
			return up, nil
		case err != nil && (!again || !retriable(err, perTry) || (policy == nil && !connectFailed)):
			return nil, err
		}
		switch {
		case !x.reading().Before(deadline): // the route's timeout is over
			if err == nil {
				return up, nil
			}
			return nil, err
		case !c.takeRetry(x, cl):
			return up, err // over the budget: what came goes to the client
		}
		if err == nil {
			c.p.log.WithField("cluster", cl.Name()).WithField("status", x.resp.Status).Debug("upstream answer retried")
			c.dropAnswer(x, cl, up)
		} else {
			c.p.log.WithError(err).WithField("cluster", cl.Name()).Debug("upstream request retried")
		}
		left--
		x.info.Retries++
		x.avoid = append(x.avoid, x.tried...)
		x.tried = x.tried[:0]
		x.resp.Reset()
		x.ur, x.uw = 0, 0
		time.Sleep(retryBackoff)
		x.mark = time.Time{}
	}
}

// retriable: a failure a retry policy tries again — a connect failure on
// every host tried, a per-try timeout, the upstream closing or garbling
// the exchange before its answer; not the route's timeout, a circuit
// breaker, a body that failed on the client's side or a client gone.
func retriable(err error, perTry bool) bool {
	var ce *cluster.ConnectError
	switch {
	case errors.Is(err, errUpstreamTimeout):
		return perTry
	case errors.As(err, &ce):
		return true
	case errors.Is(err, cluster.ErrOverflow), errors.Is(err, cluster.ErrNoHealthyHost),
		errors.Is(err, errClosed), errors.Is(err, errClientGone), errors.Is(err, errBodyTooLarge):
		return false
	}
	var pe *http1.Error
	return !errors.As(err, &pe) || pe.Status == http1.StatusBadGateway
}

// takeRetry reserves the request's place in the cluster's retry budget
// (one for all its retries); false, flagged, when it is spent.
func (c *httpConn) takeRetry(x *exchange, cl *cluster.Cluster) bool {
	if x.retryHeld {
		return true
	}
	if !cl.StartRetry() {
		x.info.Flags |= FlagRetryOverflow | FlagUpstreamOverflow
		return false
	}
	x.retryHeld = true
	return true
}

// dropAnswer throws away an answer that is retried, with its connection.
func (c *httpConn) dropAnswer(x *exchange, cl *cluster.Cluster, up *cluster.Conn) {
	c.setUpstream(nil)
	x.up = nil
	up.Host().Release()
	cl.Discard(up)
}

// bodyRefused answers a request whose body broke its framing or its limit.
func (c *httpConn) bodyRefused(x *exchange, clusterLabel string, err error) (keepAlive, responded bool) {
	var pe *http1.Error
	switch {
	case errors.Is(err, errBodyTooLarge):
		x.info.Flags |= FlagBadRequest
		return c.answerLocal(x, clusterLabel, http.StatusRequestEntityTooLarge, "request body too large\n", true), true
	case errors.As(err, &pe):
		x.info.Flags |= FlagBadRequest
		c.p.log.WithError(err).WithField("client", c.clientIP).Debug("bad request body")
		return c.answerLocal(x, clusterLabel, pe.Status, http.StatusText(pe.Status)+"\n", true), true
	default:
		x.info.Flags |= FlagDownstreamReset
		return false, false
	}
}

// upstreamFailed answers a request that got no response head: 502, 503 or
// 504, or whatever its body's failure calls for.
func (c *httpConn) upstreamFailed(x *exchange, clusterLabel string, err error) (keepAlive, responded bool) {
	c.stopPump(x)
	if c.closedNow() {
		return false, false // closed under us
	}
	if x.pumpErr != nil {
		return c.bodyRefused(x, clusterLabel, x.pumpErr)
	}
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, errUpstreamTimeout):
		status = http.StatusGatewayTimeout
		x.info.Flags |= FlagUpstreamTimeout
	case errors.Is(err, cluster.ErrOverflow):
		status = http.StatusServiceUnavailable
		x.info.Flags |= FlagUpstreamOverflow
	case errors.Is(err, cluster.ErrNoHealthyHost):
		status = http.StatusServiceUnavailable
		x.info.Flags |= FlagNoHealthyUpstream
	default:
		x.info.Flags |= FlagUpstreamReset
	}
	c.p.log.WithError(err).WithField("cluster", clusterLabel).WithField("status", status).Debug("upstream request failed")
	// What the client sent of its body is read away if it can be.
	return c.answerLocal(x, clusterLabel, status, http.StatusText(status)+"\n", false), true
}

func (c *httpConn) closedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// replayable: a request that may be sent again on a fresh connection when
// a pooled one turns out to have been closed by the upstream before it
// answered (as net/http does): idempotent and without a body.
func replayable(req *http1.Request) bool {
	if req.HasBody() {
		return false
	}
	switch string(req.Method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// send picks hosts, connects and sends until one answers with a response
// head, which it returns with its upstream connection (the host acquired),
// by deadline. A connect failure sends nothing, so the request goes to the
// next host, each tried once; a pooled connection that the upstream had
// closed is replaced by a fresh one for a replayable request. Hosts an
// earlier try used (x.avoid) are picked last.
func (c *httpConn) send(x *exchange, cl *cluster.Cluster, deadline time.Time) (*cluster.Conn, error) {
	replay := replayable(&x.req)
	var lastErr error
	var h *cluster.Host
	fresh := false // the next attempt reconnects to h
	for {
		if !fresh {
			if h = c.pickHost(x, cl); h == nil {
				break
			}
			x.tried = append(x.tried, h)
		}
		up, err := c.upstreamConn(x, cl, h, fresh, replay, deadline)
		fresh = false
		x.info.Attempts++
		x.info.Upstream = h
		if err != nil {
			var ce *cluster.ConnectError
			if !errors.As(err, &ce) {
				// A circuit breaker, or the deadline while waiting for a
				// connection: another host would fare no better.
				if errors.Is(err, context.DeadlineExceeded) {
					return nil, fmt.Errorf("%w: %w", errUpstreamTimeout, err)
				}
				return nil, err
			}
			x.info.Flags |= FlagUpstreamConnectFail
			lastErr = err
			if c.closedNow() {
				return nil, errClosed
			}
			continue
		}
		h.Acquire()
		err = c.roundTrip(x, up, deadline)
		if err == nil {
			return up, nil
		}
		x.upstreamEnded()
		h.Release()
		c.setUpstream(nil)
		cl.Discard(up)
		x.up = nil
		if errors.Is(err, errStaleConn) && replay {
			fresh, lastErr = true, err
			continue
		}
		return nil, err
	}
	if lastErr == nil {
		lastErr = cluster.ErrNoHealthyHost
	}
	return nil, lastErr
}

// pickHost picks a host not tried in this try, one no earlier try used if
// there is one.
func (c *httpConn) pickHost(x *exchange, cl *cluster.Cluster) *cluster.Host {
	if len(x.avoid) > 0 {
		n := len(x.avoid)
		x.avoid = append(x.avoid, x.tried...)
		h := cl.Pick(x.avoid)
		x.avoid = x.avoid[:n]
		if h != nil {
			return h
		}
	}
	return cl.Pick(x.tried)
}

// upstreamConn returns a connection to h: a pooled one unless fresh, else a
// new one. A pooled one for a request that cannot be sent twice is first
// checked for an upstream close. A wait for a connection under the
// cluster's max_connections ends at deadline.
func (c *httpConn) upstreamConn(x *exchange, cl *cluster.Cluster, h *cluster.Host, fresh, replay bool, deadline time.Time) (*cluster.Conn, error) {
	for !fresh {
		up := cl.IdleAt(h, x.markNow())
		if up == nil {
			break
		}
		if !replay && peerClosed(up.Conn) {
			cl.Discard(up)
			continue
		}
		return up, nil
	}
	ctx, done := c.dialContext()
	defer done()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := x.markNow()
	up, err := cl.Connect(ctx, h)
	x.mark = x.reading() // the connect's end: when the request is sent
	x.info.UpstreamConnect = x.mark.Sub(start)
	return up, err
}

// roundTrip sends the request head and the body bytes staged with it in
// one write, starts the pump for the rest of the body, and reads the
// response head by deadline.
func (c *httpConn) roundTrip(x *exchange, up *cluster.Conn, deadline time.Time) error {
	if !c.setUpstream(up) {
		return errClosed
	}
	x.up = up
	x.info.UpstreamConnID, x.info.UpstreamLocal = up.ID(), up.LocalAddr()
	sent := x.markNow()
	x.mark = time.Time{} // the exchange waits from here on
	x.upstreamSent(up.Host(), sent)
	x.info.RequestSent = sent.Sub(x.info.Start)
	if x.body.done {
		up.KeepReadDeadline(deadline, sent)
		x.headBy = deadline
	} else {
		x.headBy = time.Time{}
		// The timeout starts when the body has gone up (armHeadDeadline);
		// a stalled upload is bounded by the pump's idle timeout.
		x.headMu.Lock()
		x.headWait = time.Until(deadline)
		x.headMu.Unlock()
		_ = up.SetReadDeadline(time.Time{})
	}
	if err := c.sendRequest(x, up, deadline); err != nil {
		if isTimeout(err) {
			return fmt.Errorf("%w: %w", errUpstreamTimeout, err)
		}
		if up.Reused() && x.uw == 0 {
			return fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return fmt.Errorf("send request: %w", err)
	}
	if !x.body.done {
		c.startPump(x, up)
	}
	err := c.readResponseHead(x, up)
	x.headMu.Lock()
	x.headWait = 0
	x.headMu.Unlock()
	if err != nil {
		if isTimeout(err) {
			if c.stopPump(x); x.pumpErr != nil {
				return x.pumpErr
			}
			return fmt.Errorf("%w: %w", errUpstreamTimeout, err)
		}
		if up.Reused() && x.uw == 0 && !x.pumping {
			return fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return err
	}
	now := x.reading()
	x.info.UpstreamResponse = now.Sub(sent)
	x.info.ResponseReceived = now.Sub(x.info.Start)
	return nil
}

// sendRequest sends the composed head, with the body bytes staged after it.
// A request without more body to stream goes out from inside the wait for
// its answer, whose first bytes it reads.
func (c *httpConn) sendRequest(x *exchange, up *cluster.Conn, deadline time.Time) error {
	if r := upstreamRaw(up); r != nil && len(x.staged) == 0 && x.body.done {
		wrote, n, err := r.sendThenRead(x.ob, x.upBuf.b)
		x.uw = n
		if err != nil && c.earlyTimeout(x, up, err) {
			err = nil // readResponseHead waits on
		}
		if err != nil || wrote == len(x.ob) {
			return err
		}
		_ = up.SetWriteDeadline(deadline)
		_, err = up.Write(x.ob[wrote:])
		return err
	}
	_ = up.SetWriteDeadline(deadline)
	return x.writeRequest(up)
}

// earlyTimeout reports whether err, from a read of the answer's head, is
// the deadline an earlier exchange left on the socket expiring before this
// exchange's own (x.headBy): it then sets that one, and the read may go on.
// A deadline Close set (the connection is closed) is never early; the
// check and the new deadline are under mu, which Close takes before it sets
// its own.
func (c *httpConn) earlyTimeout(x *exchange, up *cluster.Conn, err error) bool {
	if x.headBy.IsZero() || x.pumping || !isTimeout(err) || !x.reading().Before(x.headBy) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	_ = up.SetReadDeadline(x.headBy)
	x.headBy = time.Time{} // the exact one is set: its timeout is the answer
	return true
}

// upstreamRaw is the non-blocking I/O helper of an upstream connection,
// made on its first exchange and kept with it.
func upstreamRaw(up *cluster.Conn) *rawIO {
	if r, ok := up.Attached.(*rawIO); ok {
		return r
	}
	r := newRawIO(up.Conn)
	if r != nil {
		up.Attached = r
	}
	return r
}

// writeRequest writes the composed head with the staged body bytes.
func (x *exchange) writeRequest(up net.Conn) error {
	if len(x.staged) == 0 {
		_, err := up.Write(x.ob)
		return err
	}
	x.iov = [2][]byte{x.ob, x.staged}
	bufs := net.Buffers(x.iov[:])
	_, err := bufs.WriteTo(up)
	return err
}

// readResponseHead reads and parses the upstream's response head, skipping
// informational (1xx) ones.
func (c *httpConn) readResponseHead(x *exchange, up *cluster.Conn) error {
	for informational := 0; ; {
		from := 0
		for {
			parsed, err := x.parseHead(c.p.bufs, &from)
			if err != nil {
				return err
			}
			if parsed {
				break
			}
			n, err := up.Read(x.upBuf.b[x.uw:])
			x.uw += n
			if n == 0 && err != nil {
				if c.earlyTimeout(x, up, err) {
					continue
				}
				if x.pumpFailed() {
					return x.pumpErr
				}
				return fmt.Errorf("read upstream response: %w", err)
			}
		}
		switch s := x.resp.Status; {
		case s == http.StatusSwitchingProtocols:
			return checkSwitch(x) // the final answer to an upgrade
		case s < 200:
			if informational++; informational > 8 {
				return errors.New("upstream sent more than 8 informational responses")
			}
			continue
		}
		return nil
	}
}

// readRoom is how much one read of a response body may take: the buffer,
// or less under conn_buffer_limit_bytes.
func (x *exchange) readRoom() int {
	if x.bufLimit > 0 && x.bufLimit < len(x.upBuf.b) {
		return x.bufLimit
	}
	return len(x.upBuf.b)
}

// upIn is an upstream's answer as it is read, by the HTTP/1 engine's
// exchange and by an HTTP/2 stream's HTTP/1 exchange (h1Up): the bytes,
// upBuf.b[ur:uw] read and not consumed, and the response head parsed in
// place in them.
type upIn struct {
	upBuf  *buffer
	ur, uw int
	resp   http1.Response
}

// parseHead parses a response head from the bytes read so far, its end
// searched from where the last call left off (*from, 0 for a new head),
// and reports whether it found one. If not, it makes room for the next
// read; a head that would outgrow maxResponseHead is an error.
func (u *upIn) parseHead(bufs *bufPool, from *int) (bool, error) {
	if u.ur < u.uw {
		end, next := http1.HeadEnd(u.upBuf.b[u.ur:u.uw], *from)
		if end >= 0 {
			head := u.upBuf.b[u.ur : u.ur+end]
			u.ur += end
			if err := http1.ParseResponse(head, &u.resp, maxResponseHeaders); err != nil {
				return false, fmt.Errorf("upstream response: %w", err)
			}
			return true, nil
		}
		*from = next
	}
	if u.uw-u.ur >= maxResponseHead {
		return false, fmt.Errorf("upstream response head larger than %d bytes", maxResponseHead)
	}
	if u.uw == len(u.upBuf.b) {
		u.growUpstream(bufs)
	}
	return false, nil
}

// growUpstream makes room after the unparsed upstream bytes.
func (u *upIn) growUpstream(bufs *bufPool) {
	if u.ur > 0 {
		u.uw = copy(u.upBuf.b, u.upBuf.b[u.ur:u.uw])
		u.ur = 0
		if u.uw < len(u.upBuf.b) {
			return
		}
	}
	nb := bufs.get(len(u.upBuf.b) * 4)
	u.uw = copy(nb.b, u.upBuf.b[:u.uw])
	bufs.put(u.upBuf)
	u.upBuf = nb
}

// pumpFailed reports a pump that ended with an error (after which the
// upstream connection was closed under the exchange).
func (x *exchange) pumpFailed() bool {
	return x.pumping && x.pumpDone.Load() && x.pumpErr != nil
}

// Ways the response body comes from upstream.
const (
	inNone = iota
	inLength
	inChunked
	inUntilClose
)

// forwardResponse writes the upstream's answer to the client, streaming its
// body, and hands the upstream connection back as soon as the body is read.
func (c *httpConn) forwardResponse(x *exchange, cl *cluster.Cluster, up *cluster.Conn) (keepAlive, responded bool) {
	h := up.Host()
	defer h.Release()
	req, resp := &x.req, &x.resp
	c.setPhase(phaseWriting)
	closeAfter := req.Close || c.isDraining()
	if x.pumping && !x.pumpDone.Load() {
		// The upstream answered before the whole body arrived: the rest is
		// read away afterwards if it is short, or the connection closes;
		// the client is told now.
		left := x.body.remaining()
		closeAfter = closeAfter || left < 0 || left > maxDiscard
	}
	in, chunkOut := inNone, false
	isHead := req.IsMethod(http.MethodHead)
	switch {
	case !http1.BodyAllowed(isHead, resp.Status):
	case resp.ContentLength >= 0:
		in = inLength
	default:
		in = inUntilClose
		if resp.Chunked {
			in = inChunked
		}
		if req.Minor >= 1 {
			chunkOut = true
		} else {
			closeAfter = true // an HTTP/1.0 client: the end of the body is the close
		}
	}
	reuse := !resp.Close && in != inUntilClose
	c.p.answered(x, x.info.Cluster, resp.Status)
	x.info.Status = resp.Status
	x.info.resp, x.info.route = resp, x.res.action
	x.ob = x.ob[:0]
	x.staged = nil
	x.composeResponse(isHead, in, chunkOut, closeAfter)

	var err error
	switch in {
	case inNone:
		c.releaseUpstream(x, cl, up, reuse)
		err = c.flushEnd(x)
	case inLength:
		err = c.copyLength(x, cl, up, resp.ContentLength, reuse)
	default:
		err = c.copyStream(x, cl, up, in == inChunked, chunkOut, reuse)
	}
	if x.up != nil { // failed before the body was all read
		c.releaseUpstream(x, cl, up, false)
	}
	if x.pumping {
		if !x.pumpDone.Load() {
			c.stopPump(x)
		} else {
			x.pump.Wait()
			x.pumping = false
		}
	}
	if err != nil {
		c.p.log.WithError(err).WithField("cluster", x.info.Cluster).Debug("response streaming failed")
		x.info.Flags |= FlagUpstreamReset
		return false, true
	}
	if closeAfter || x.pumpErr != nil {
		return false, true
	}
	if !x.body.done {
		// The answer goes out before the rest of the body is read away.
		if x.deferred {
			x.deferred = false
			if err := c.flush(x); err != nil {
				return false, true
			}
		}
		return c.discardBody(x), true
	}
	return true, true
}

// releaseUpstream ends the exchange's hold on the upstream connection: back
// to the pool if the response was read whole and the request sent whole.
func (c *httpConn) releaseUpstream(x *exchange, cl *cluster.Cluster, up *cluster.Conn, reuse bool) {
	if c.dropUpstream() {
		reuse = false // Close may have set its abort deadline on it
	}
	x.up = nil
	x.upstreamDone()
	// The answer's end: the request's too, and the start of the idle wait,
	// unless the writes of its last bytes wait (see endRequest). Written
	// without mu: nothing reads idleSince while the connection is not idle.
	if !x.upEnd.IsZero() {
		c.idleSince, c.endKnown = x.upEnd, true
	}
	if x.pumping && !x.pumpDone.Load() {
		c.stopPump(x) // the answer came before the whole body: the rest is not sent
	}
	// The pump's state is read only once it is done.
	sentWhole := !x.pumping && x.body.done ||
		x.pumping && x.pumpDone.Load() && x.pumpErr == nil && x.body.done
	if reuse && sentWhole {
		if x.upEnd.IsZero() { // every caller follows a round trip; a zero would pool it as idle since year 1
			x.upEnd = x.reading()
		}
		cl.PutAt(up, x.upEnd)
		return
	}
	cl.Discard(up)
}

// copyLength streams a body of n bytes: what came with the head goes out
// with the head in one write.
func (c *httpConn) copyLength(x *exchange, cl *cluster.Cluster, up *cluster.Conn, n int64, reuse bool) error {
	left := n
	avail := x.upBuf.b[x.ur:x.uw]
	if int64(len(avail)) > left {
		avail = avail[:left] // bytes past the body: the connection is not reused
		reuse = false
	}
	x.ur += len(avail)
	left -= int64(len(avail))
	x.info.BytesSent += int64(len(avail))
	if left == 0 {
		c.releaseUpstream(x, cl, up, reuse)
	}
	if left == 0 {
		return c.writeOutEnd(x, avail)
	}
	if len(avail) > 0 {
		if err := c.writeOut(x, avail); err != nil {
			return err
		}
	}
	for left > 0 {
		_ = up.SetReadDeadline(x.reading().Add(c.p.idleTimeout))
		m := min(int64(x.readRoom()), left)
		got, err := up.Read(x.upBuf.b[:m])
		if got > 0 {
			left -= int64(got)
			x.info.BytesSent += int64(got)
			if left == 0 {
				c.releaseUpstream(x, cl, up, reuse)
				return c.writeOutEnd(x, x.upBuf.b[:got])
			}
			if werr := c.writeOut(x, x.upBuf.b[:got]); werr != nil {
				return werr
			}
		}
		if err != nil && left > 0 {
			if err == io.EOF {
				return errShortBody
			}
			return fmt.Errorf("read upstream body: %w", err)
		}
	}
	return nil
}

// copyStream streams a chunked or close-delimited body, re-framed for the
// client (chunked, or as is for an HTTP/1.0 client), flushing after every
// read so that a streaming upstream streams to the client too.
func (c *httpConn) copyStream(x *exchange, cl *cluster.Cluster, up *cluster.Conn, chunkedIn, chunkOut, reuse bool) error {
	dec := &x.respDec
	dec.Reset()
	dec.Status = http1.StatusBadGateway
	// Without a known length the upstream may be streaming (events, long
	// polls): the head goes out now, not with the first body bytes.
	if x.ur == x.uw {
		if err := c.flush(x); err != nil {
			return err
		}
	}
	for {
		for x.ur < x.uw {
			data := x.upBuf.b[x.ur:x.uw]
			if chunkedIn {
				d, n, err := dec.Next(data)
				x.ur += n
				if err != nil {
					return fmt.Errorf("upstream body: %w", err)
				}
				if dec.Done() {
					if x.ur < x.uw {
						reuse = false // bytes past the body
					}
					x.ur = x.uw
				}
				data = d
			} else {
				x.ur = x.uw
			}
			if len(data) > 0 {
				x.info.BytesSent += int64(len(data))
				if err := c.appendBody(x, data, chunkOut); err != nil {
					return err
				}
			}
		}
		if chunkedIn && dec.Done() {
			c.releaseUpstream(x, cl, up, reuse)
			if chunkOut {
				x.ob = append(x.ob, "0\r\n"...)
				x.ob = append(x.ob, dec.Trailers()...)
				x.ob = append(x.ob, "\r\n"...)
			}
			return c.flushEnd(x)
		}
		if err := c.flush(x); err != nil {
			return err
		}
		_ = up.SetReadDeadline(x.reading().Add(c.p.idleTimeout))
		x.ur, x.uw = 0, 0
		n, err := up.Read(x.upBuf.b[:x.readRoom()])
		x.uw = n
		if n == 0 && err != nil {
			if err == io.EOF && !chunkedIn {
				c.releaseUpstream(x, cl, up, false)
				if chunkOut {
					x.ob = append(x.ob, "0\r\n\r\n"...)
				}
				return c.flushEnd(x)
			}
			if err == io.EOF {
				return errShortBody
			}
			return fmt.Errorf("read upstream body: %w", err)
		}
	}
}

// appendBody adds body bytes to what goes out, as a chunk if chunked.
func (c *httpConn) appendBody(x *exchange, data []byte, chunked bool) error {
	if chunked {
		x.ob = http1.AppendChunkHeader(x.ob, len(data))
	}
	if len(x.ob)+len(data) > cap(x.ob) && len(data) > 4096 {
		// Large: written from where it is, without a copy.
		if err := c.writeOut(x, data); err != nil {
			return err
		}
	} else {
		x.ob = append(x.ob, data...)
	}
	if chunked {
		x.ob = append(x.ob, '\r', '\n')
	}
	return nil
}

// writeOut writes x.ob followed by data in as few writes as it takes: one
// if they fit the buffer together.
func (c *httpConn) writeOut(x *exchange, data []byte) error {
	if len(x.ob)+len(data) <= cap(x.ob) {
		x.ob = append(x.ob, data...)
		return c.flush(x)
	}
	if err := c.flush(x); err != nil {
		return err
	}
	return c.write(data)
}

// writeOutEnd is writeOut for an answer's last bytes (see flushEnd).
func (c *httpConn) writeOutEnd(x *exchange, data []byte) error {
	if len(x.ob)+len(data) <= cap(x.ob) {
		x.ob = append(x.ob, data...)
		return c.flushEnd(x)
	}
	return c.writeOut(x, data)
}

// flush writes what x.ob holds.
func (c *httpConn) flush(x *exchange) error {
	if len(x.ob) == 0 {
		return nil
	}
	err := c.write(x.ob)
	x.ob = x.ob[:0]
	return err
}

// peerClosed reports whether a pooled upstream connection was closed by the
// upstream (or has unexpected bytes waiting): one non-blocking peek.
func peerClosed(nc net.Conn) bool {
	r := newRawIO(socketOf(nc))
	if r == nil {
		return false
	}
	var rerr error
	var b [1]byte
	if err := r.rc.Control(func(fd uintptr) {
		_, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return true
	}
	// EAGAIN: alive and quiet. Anything else — EOF, bytes nobody asked
	// for, a reset — and the connection is not worth a request.
	return rerr != unix.EAGAIN
}

package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mosnlite/mosnlite/server/cluster"
)

// proxyRequest sends req to the routed cluster and streams the response back.
// It reports whether the connection may carry another request, and whether
// any response was written.
func (c *httpConn) proxyRequest(req *http.Request, res routeResult) (keepAlive, responded bool) {
	cl := c.p.clusters.Get(res.cluster)
	if cl == nil || cl.HealthyCount() == 0 {
		return c.answerLocal(req, res.cluster, http.StatusServiceUnavailable, "no healthy upstream\n", false), true
	}

	expect := expectsContinue(req)
	out := c.outboundRequest(req)
	var body *reqBody
	if req.Body != http.NoBody && req.Body != nil {
		if expect {
			// Answered here so the client sends its body; the upstream sees none of it.
			if _, err := c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return false, false
			}
			if err := c.bw.Flush(); err != nil {
				return false, false
			}
		}
		body = newReqBody(c, req.Body)
		out.Body = body
		out.ContentLength = req.ContentLength
	}

	timeout := res.timeout
	if timeout <= 0 {
		timeout = c.p.upstreamTimeout
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	// One timer: first the wait for the response head (→ 504), then, reset on
	// every read, the idle limit while the response body streams.
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		cancel()
	})
	defer timer.Stop()

	out = out.WithContext(ctx)
	// The host is chosen per request. A connect failure sent nothing, so the
	// request goes to the next host, each tried at most once.
	var (
		tried []*cluster.Host
		resp  *http.Response
		err   error
	)
	for {
		h := cl.Pick(tried)
		if h == nil {
			if err == nil {
				err = cluster.ErrNoHealthyHost
			}
			break
		}
		tried = append(tried, h)
		out.URL.Host = h.PoolKey()
		h.Acquire()
		resp, err = cl.Transport().RoundTrip(out)
		if err == nil {
			defer h.Release()
			break
		}
		h.Release()
		var ce *cluster.ConnectError
		if !errors.As(err, &ce) || ctx.Err() != nil || (body != nil && body.read.Load() > 0) {
			break
		}
	}
	if err == nil && !timer.Stop() && timedOut.Load() {
		resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		if c.ctx.Err() != nil {
			return false, false // the connection was closed under us
		}
		status := http.StatusBadGateway
		switch {
		case timedOut.Load():
			status = http.StatusGatewayTimeout
		case errors.Is(err, cluster.ErrNoHealthyHost):
			status = http.StatusServiceUnavailable
		}
		c.log.WithError(err).WithField("cluster", res.cluster).WithField("status", status).Debug("upstream request failed")
		complete := true
		if body != nil {
			complete = body.detach()
		}
		ok := c.answerLocal(req, res.cluster, status, http.StatusText(status)+"\n", !complete)
		return ok, true
	}

	timer.Reset(c.p.idleTimeout) // now the idle limit between upstream reads
	c.setPhase(phaseWriting)
	closeAfter := req.Close || c.isDraining()
	if body != nil && !body.eof.Load() {
		// The upstream answered before the whole body arrived: the body is
		// read away afterwards, or the connection closed; tell the client.
		closeAfter = closeAfter || req.ContentLength < 0 || req.ContentLength-body.read.Load() > maxDiscard
	}
	c.p.countRequest(res.cluster, resp.StatusCode)
	keepAlive, err = c.writeProxied(req, resp, closeAfter, func() { timer.Reset(c.p.idleTimeout) })
	resp.Body.Close()
	if err != nil {
		c.log.WithError(err).WithField("cluster", res.cluster).Debug("response streaming failed")
		if body != nil {
			body.detach()
		}
		return false, true
	}
	if body != nil && !body.detach() {
		keepAlive = keepAlive && c.discardBody(req.Body)
	}
	return keepAlive, true
}

// outboundRequest builds the upstream request: same method, target, Host and
// end-to-end headers, plus X-Forwarded-For and X-Forwarded-Proto.
func (c *httpConn) outboundRequest(req *http.Request) *http.Request {
	h := req.Header
	removeHopByHop(h)
	h.Del("Expect")
	if c.clientIP != "" {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+c.clientIP)
		} else {
			h.Set("X-Forwarded-For", c.clientIP)
		}
	}
	h.Set("X-Forwarded-Proto", "http")
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // keeps the transport from adding its own
	}
	return &http.Request{
		Method: req.Method,
		URL: &url.URL{
			Scheme:   "http",
			Host:     "", // set per attempt to the picked host's pool key
			Path:     req.URL.Path,
			RawPath:  req.URL.RawPath,
			RawQuery: req.URL.RawQuery,
		},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       req.Host,
		Trailer:    req.Trailer,
	}
}

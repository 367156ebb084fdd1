package proxy

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// pathOf is the path of a request target, without its query.
func pathOf(target []byte) []byte {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

// composeRequest writes the upstream request head into x.ob: the method
// and target (origin-form; its path rewritten as the route says), Host
// (rewritten likewise), the end-to-end fields as the client sent them with
// the route's header operations applied, X-Forwarded-For with the client's
// address appended, X-Forwarded-Proto (https over TLS), the body's
// framing, and an upgrade's Connection and Upgrade. Other hop-by-hop
// fields, those the Connection header names, and Expect stay behind.
func (c *httpConn) composeRequest(x *exchange) {
	req := &x.req
	a := x.res.action
	var ops *headerOps
	if a != nil && !a.reqOps.empty() {
		ops = &a.reqOps
		x.hbuf, x.resolved = ops.resolve(req.Headers, &x.info, x.hbuf[:0], x.resolved[:0])
	}
	b := x.ob[:0]
	b = append(b, req.Method...)
	b = append(b, ' ')
	path := pathOf(req.Path)
	var rewritten bool
	if a != nil && (len(a.prefixRewrite) > 0 || a.regexRewrite != nil) {
		// The rewrite works on the normalised path, which goes upstream
		// when it was rewritten (escaped again where a request line needs
		// it); else the path goes as the client sent it, as in MOSN.
		p := x.path
		if len(p) == 0 {
			p = []byte("/")
		}
		start := len(b)
		b, rewritten = a.rewritePath(b, p, x.res.matched)
		if !rewritten {
			b = b[:start]
			if len(path) == 0 {
				b = append(b, '/')
			}
			b = append(b, path...)
		} else if needsEscape(b[start:]) {
			b = appendEscapedPath(b[:start], append([]byte(nil), b[start:]...))
		}
		b = append(b, req.Path[len(path):]...)
	} else {
		if len(req.Path) == 0 || req.Path[0] == '?' {
			b = append(b, '/') // "http://host" or "http://host?q"
		}
		b = append(b, req.Path...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, x.upstreamHost(ops)...)
	b = append(b, "\r\n"...)
	if rewritten {
		// As MOSN, the path the client asked for goes along.
		b = append(b, "X-Mosn-Original-Path: "...)
		b = append(b, path...)
		b = append(b, "\r\n"...)
	}
	ownXFF := c.clientIP != "" && (ops == nil || !ops.touches([]byte("x-forwarded-for")))
	ownXFP := ops == nil || !ops.touches([]byte("x-forwarded-proto"))
	var xff [][]byte
	var xffStore [4][]byte
	xff = xffStore[:0]
	for _, h := range req.Headers {
		switch k := http1.Kind(h.Name); {
		case k.HopByHop(), k == http1.KindHost, k == http1.KindContentLength, k == http1.KindExpect,
			k == http1.KindXForwardedProto:
			continue
		case ops != nil && ops.touches(h.Name):
			continue
		case rewritten && http1.EqualFold(h.Name, "x-mosn-original-path"):
			continue
		case k == http1.KindXForwardedFor && ownXFF:
			xff = append(xff, h.Value)
			continue
		case req.ConnectionOption(h.Name):
			continue
		}
		b = appendField(b, h.Name, h.Value)
	}
	if ops != nil {
		b = x.appendResolved(b, "host")
	}
	if ownXFF {
		b = append(b, "X-Forwarded-For: "...)
		for _, v := range xff {
			b = append(b, v...)
			b = append(b, ", "...)
		}
		b = append(b, c.clientIP...)
		b = append(b, "\r\n"...)
	}
	if x.upgrade {
		b = append(b, "Connection: Upgrade\r\n"...)
		b = appendField(b, []byte("Upgrade"), req.Upgrade)
	}
	if ownXFP {
		b = append(b, "X-Forwarded-Proto: "...)
		b = append(b, c.scheme...)
		b = append(b, "\r\n"...)
	}
	switch {
	case req.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	x.ob = append(b, "\r\n"...)
}

// upstreamHost is the Host the request goes upstream with: the client's,
// or a host set by the header operations, then, as MOSN, host_rewrite, or
// else auto_host_rewrite_header's field if the request has it.
func (x *exchange) upstreamHost(ops *headerOps) []byte {
	host := x.req.Host
	if ops != nil {
		if v, ok := x.resolvedValue("host"); ok {
			host = v
		}
	}
	a := x.res.action
	switch {
	case a == nil:
	case len(a.hostRewrite) > 0:
		host = a.hostRewrite
	case a.hostHeader != "":
		v, ok := []byte(nil), false
		if ops != nil && ops.touches([]byte(a.hostHeader)) {
			v, ok = x.resolvedValue(a.hostHeader)
		} else {
			v, ok = headerValue(x.req.Headers, a.hostHeader)
		}
		if ok && len(v) > 0 {
			host = v
		}
	}
	return host
}

// resolvedValue is the final value of a field the header operations
// touch, if it is present.
func (x *exchange) resolvedValue(name string) ([]byte, bool) {
	for _, f := range x.resolved {
		if f.name == name {
			return x.hbuf[f.from:f.to], f.present
		}
	}
	return nil, false
}

// appendResolved writes the fields the header operations leave present,
// but skip.
func (x *exchange) appendResolved(b []byte, skip string) []byte {
	for _, f := range x.resolved {
		if f.present && f.name != skip {
			b = appendField(b, []byte(f.name), x.hbuf[f.from:f.to])
		}
	}
	return b
}

// composeResponse writes the client's response head into x.ob: the
// upstream's status and end-to-end fields, the body's framing for the
// client, and whether the connection stays open.
func (x *exchange) composeResponse(isHead bool, in int, chunkOut, closeAfter bool) {
	resp := &x.resp
	var ops *headerOps
	if a := x.res.action; a != nil && !a.respOps.empty() {
		ops = &a.respOps
		x.hbuf, x.resolved = ops.resolve(resp.Headers, &x.info, x.hbuf[:0], x.resolved[:0])
	}
	b := appendStatusLine(x.ob, resp.Status, resp.Reason)
	for _, h := range resp.Headers {
		switch k := http1.Kind(h.Name); {
		case k.HopByHop(), k == http1.KindContentLength:
			continue
		case resp.ConnectionOption(h.Name):
			continue
		case ops != nil && ops.touches(h.Name):
			continue
		}
		b = appendField(b, h.Name, h.Value)
	}
	if ops != nil {
		b = x.appendResolved(b, "")
	}
	switch {
	case in == inLength:
		b = appendContentLength(b, resp.ContentLength)
	case in == inNone:
		// HEAD and 304 keep the upstream's Content-Length; 1xx and 204 have none.
		if (isHead || resp.Status == http.StatusNotModified) && resp.ContentLength >= 0 {
			b = appendContentLength(b, resp.ContentLength)
		}
	case chunkOut:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = appendConnection(b, x.req.Minor, closeAfter)
	x.ob = append(b, "\r\n"...)
}

func appendStatusLine(b []byte, status int, reason []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = append(b, byte('0'+status/100%10), byte('0'+status/10%10), byte('0'+status%10), ' ')
	if len(reason) > 0 {
		b = append(b, reason...)
	} else {
		b = append(b, http.StatusText(status)...)
	}
	return append(b, "\r\n"...)
}

func appendField(b, name, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// appendConnection says whether the connection stays open: close, or
// keep-alive for an HTTP/1.0 client that asked for it (1.1 keeps by default).
func appendConnection(b []byte, minor int, closeAfter bool) []byte {
	switch {
	case closeAfter:
		return append(b, "Connection: close\r\n"...)
	case minor == 0:
		return append(b, "Connection: keep-alive\r\n"...)
	}
	return b
}

// answerLocal answers the request from the proxy itself (no route, a direct
// response, a refused request, an upstream failure before any response
// byte) and reports whether the connection may carry another request.
func (c *httpConn) answerLocal(x *exchange, clusterLabel string, status int, body string, forceClose bool) bool {
	c.setPhase(phaseWriting)
	req := &x.req
	// A client waiting for 100-continue never sent its body: what follows on
	// the wire may not be what the body's framing says.
	closeAfter := forceClose || req.Close || c.isDraining() || (req.Expect100 && !x.body.done)
	c.p.answered(x, clusterLabel, status)
	x.info.Status = status
	if x.info.Cluster == "" {
		x.info.Cluster = clusterLabel
	}
	b := appendStatusLine(x.ob[:0], status, nil)
	b = append(b, x.extraHead...)
	if http1.BodyAllowed(false, status) {
		if body != "" {
			b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
		}
		b = appendContentLength(b, int64(len(body)))
	} else {
		body = ""
	}
	b = appendConnection(b, req.Minor, closeAfter)
	b = append(b, "\r\n"...)
	if !req.IsMethod(http.MethodHead) {
		b = append(b, body...)
		x.info.BytesSent = int64(len(body))
	}
	x.ob = b
	if closeAfter || !x.body.done {
		if err := c.flush(x); err != nil || closeAfter {
			return false
		}
		return c.discardBody(x)
	}
	return c.flushEnd(x) == nil
}

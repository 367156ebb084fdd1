package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/conntrack"
	"github.com/mosnlite/mosnlite/server/proxy/h2"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
	"github.com/mosnlite/mosnlite/service/stats"
)

// HTTP2Server is what serves an HTTP/2 connection that was negotiated
// elsewhere: a TLS listener whose handshake chose "h2" by ALPN hands the
// *tls.Conn here. prefix holds bytes already read from nc (part of the
// client preface), if any.
type HTTP2Server interface {
	ServeHTTP2(nc net.Conn, prefix []byte)
}

// h2Settings are the HTTP/2 limits of a proxy, from its filter config.
func h2Settings(cfg config.HTTPProxyConfig) h2.Config {
	return h2.Config{
		MaxConcurrentStreams: uint32(cfg.HTTP2MaxConcurrentStreams), // validated by config
		StreamWindow:         uint32(cfg.HTTP2InitialStreamWindowSize),
		ConnWindow:           uint32(cfg.HTTP2InitialConnectionWindowSize),
	}
}

// h2Conn is one downstream HTTP/2 connection, as the tracker sees it:
// Drain is the graceful two-step GOAWAY, Close closes now.
type h2Conn struct {
	p             *httpProxy
	c             *h2.Conn
	clientIP      string
	scheme        string // "https" over TLS
	remote, local net.Addr
	id            uint64 // the connection's number in the process
}

// Drain starts the graceful GOAWAY. A connection that has carried no
// stream yet — one accepted just before the handoff, whose first request
// is on its way — is served for drainIdleGrace first: a client that reads
// a GOAWAY before its first stream may give up the request (Go's does)
// instead of sending it elsewhere.
func (hc *h2Conn) Drain() {
	if hc.c.Fresh() {
		time.AfterFunc(drainIdleGrace, hc.c.Shutdown)
		return
	}
	hc.c.Shutdown()
}

func (hc *h2Conn) Close() error { return hc.c.Close() }

// ServeHTTP2 serves nc as an HTTP/2 server connection until it ends; it
// tracks the connection, and returns once every stream is done.
func (p *httpProxy) ServeHTTP2(nc net.Conn, prefix []byte) {
	p.trackH2(nc, prefix, nil)()
}

// trackH2 prepares and tracks an HTTP/2 connection at once (so that a
// drain's wait sees it from its accept on) and returns what serves it. A
// connection tracked as placeholder until now (its TLS handshake) is
// tracked in its place (Tracker.Replace).
func (p *httpProxy) trackH2(nc net.Conn, prefix []byte, placeholder conntrack.Conn) (serve func()) {
	hc := &h2Conn{p: p, scheme: "http", remote: nc.RemoteAddr(), local: nc.LocalAddr(), id: p.clusters.NextConnID()}
	if _, ok := nc.(*tls.Conn); ok {
		hc.scheme = "https"
	}
	if tcp, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		hc.clientIP = tcp.IP.String()
	}
	cfg := p.h2cfg
	cfg.MaxHeaderListSize = uint32(p.maxHeadBytes)
	cfg.MaxHeaderCount = p.maxHeaders
	cfg.IdleTimeout = p.idleTimeout
	cfg.HandshakeTimeout = p.headerTimeout
	cfg.Log = p.log
	cfg.OnBusy = func(busy bool) {
		s := conntrack.Idle
		if busy {
			s = conntrack.Active
		}
		p.tracker.SetState(hc, s)
	}
	hc.c = h2.NewServer(countingConn{nc, p}, prefix, cfg, hc.serveStream)
	var remove func()
	if placeholder != nil {
		remove = p.tracker.Replace(placeholder, hc)
	} else {
		remove = p.tracker.Add(hc)
	}
	return func() {
		defer remove()
		if err := hc.c.Serve(); err != nil {
			p.log.WithError(err).WithField("client", hc.clientIP).Debug("http2 connection ended")
		}
	}
}

// detecting is a connection of an Auto listener while its first bytes
// are awaited: tracked, so that a drain waits for it; closed by CloseAll.
type detecting struct{ nc net.Conn }

func (d *detecting) Drain()       {}
func (d *detecting) Close() error { return d.nc.Close() }

// countingConn counts a downstream connection's bytes in the listener's
// counters.
type countingConn struct {
	net.Conn
	p *httpProxy
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.p.rxBytes.Add(float64(n))
	}
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.p.txBytes.Add(float64(n))
	}
	return n, err
}

// CloseWrite half-closes, where the connection can.
func (c countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("proxy: connection cannot half-close")
}

// detect serves a connection of an Auto listener: HTTP/2 if it starts with
// the client preface, else HTTP/1.x. It looks without consuming (a peek),
// so that the HTTP/1 engine reads the request from the socket as always.
// The connection is tracked throughout: the engine's own entry is added
// before the placeholder's is removed.
func (p *httpProxy) detect(nc net.Conn) {
	d := &detecting{nc: nc}
	removeD := p.tracker.Add(d)
	go func() {
		if isH2, ok := p.peekPreface(nc); ok && isH2 {
			serve := p.trackH2(nc, nil, nil)
			removeD()
			serve()
			return
		}
		p.serveHTTP1(nc)
		removeD()
	}()
}

// peekPreface waits, within the header timeout, for enough of the first
// bytes to tell the HTTP/2 preface from anything else. ok is false when
// it could not tell (no descriptor, the client went away or is silent):
// HTTP/1 then reads and answers as it would.
func (p *httpProxy) peekPreface(nc net.Conn) (isH2, ok bool) {
	sc, isSC := nc.(syscall.Conn)
	if !isSC {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	deadline := time.Now().Add(p.headerTimeout)
	_ = nc.SetReadDeadline(deadline)
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	var buf [len(h2.ClientPreface)]byte
	for {
		var n int
		var perr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, perr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return perr != unix.EAGAIN
		})
		if err != nil || perr != nil || n == 0 {
			return false, false
		}
		if !bytes.HasPrefix([]byte(h2.ClientPreface), buf[:n]) {
			return false, true
		}
		if n == len(buf) {
			return true, true
		}
		// A part of the preface: the rest is on its way. The socket stays
		// readable with what is queued, so wait a little between peeks.
		if time.Now().After(deadline) {
			return false, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// h2Request is a downstream stream's request head, parsed.
type h2Request struct {
	method, scheme, authority, path string
	fields                          []hpack.HeaderField // regular fields, as received
	contentLength                   int64               // -1 if none
	grpc                            bool                // content-type application/grpc…
	grpcTimeout                     time.Duration       // 0 if none
	info                            http1.Request       // for routing and the request record
}

// errMalformed: a request head that breaks RFC 9113 §8.3.
var errMalformed = errors.New("malformed HTTP/2 request head")

func parseH2Request(fs []hpack.HeaderField, r *h2Request) error {
	r.contentLength = -1
	regular := false
	for _, f := range fs {
		if strings.HasPrefix(f.Name, ":") {
			if regular {
				return errMalformed
			}
			var dst *string
			switch f.Name {
			case ":method":
				dst = &r.method
			case ":scheme":
				dst = &r.scheme
			case ":authority":
				dst = &r.authority
			case ":path":
				dst = &r.path
			default:
				return errMalformed
			}
			if *dst != "" {
				return errMalformed
			}
			*dst = f.Value
			continue
		}
		regular = true
		if h2ConnectionSpecific(f) {
			return errMalformed // RFC 9113 §8.2.2
		}
		switch f.Name {
		case "host":
			if r.authority == "" {
				r.authority = f.Value
			}
		case "content-length":
			n, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil || n < 0 {
				return errMalformed
			}
			r.contentLength = n
		case "content-type":
			r.grpc = strings.HasPrefix(f.Value, "application/grpc")
		case "grpc-timeout":
			r.grpcTimeout = parseGRPCTimeout(f.Value)
		}
		r.fields = append(r.fields, f)
	}
	if r.method == "" || r.method != http.MethodConnect && (r.scheme == "" || r.path == "") {
		return errMalformed
	}
	r.info.Method = []byte(r.method)
	r.info.Target = []byte(r.path)
	r.info.Path = r.info.Target
	r.info.Host = []byte(r.authority)
	r.info.Minor = 1
	r.info.ContentLength = r.contentLength
	for _, f := range r.fields {
		r.info.Headers = append(r.info.Headers, http1.Header{Name: []byte(f.Name), Value: []byte(f.Value)})
	}
	return nil
}

// h2ConnectionSpecific: fields an HTTP/2 message must not carry (te other
// than "trailers" included).
func h2ConnectionSpecific(f hpack.HeaderField) bool {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return f.Value != "trailers"
	}
	return false
}

// parseGRPCTimeout reads a grpc-timeout value (at most 8 digits and a
// unit); 0 if malformed.
func parseGRPCTimeout(v string) time.Duration {
	if len(v) < 2 || len(v) > 9 {
		return 0
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	return time.Duration(n) * unit
}

// h2Exchange is one downstream stream's state.
type h2Exchange struct {
	hc       *h2Conn
	st       *h2.Stream
	req      h2Request
	info     RequestInfo
	res      routeResult
	location string                   // a redirect's Location
	series   *stats.HTTPRequestSeries // the downstream request's series, once answered
	upCl     *cluster.Cluster         // the cluster the request went to
	upHost   *cluster.Host            // the host it was last sent to, and when
	upSent   time.Time
	headSent bool         // a response head went to the client
	rx       atomic.Int64 // request body bytes, counted by the relay
	// overLimit: the relay found the body over max_request_body_bytes.
	overLimit atomic.Bool
}

// serveStream answers one downstream stream: routed as an HTTP/1 request
// is, proxied to the cluster over the upstream protocol, recorded and
// counted.
func (hc *h2Conn) serveStream(st *h2.Stream) {
	p := hc.p
	x := &h2Exchange{hc: hc, st: st}
	x.info.Listener = p.name
	x.info.Protocol, x.info.Scheme = ProtocolHTTP2, hc.scheme
	x.info.Downstream = hc.clientIP
	x.info.Remote, x.info.Local, x.info.ConnID = hc.remote, hc.local, hc.id
	x.info.Start = time.Now()
	p.metrics.Active().Inc()
	defer func() {
		x.info.Duration = time.Since(x.info.Start)
		x.info.BytesReceived = x.rx.Load()
		x.observe()
		for _, observe := range p.observers {
			observe(&x.info)
		}
	}()
	if err := parseH2Request(st.Header(), &x.req); err != nil {
		x.info.Flags |= FlagBadRequest
		st.Reset(http2.ErrCodeProtocol)
		return
	}
	x.info.Request = &x.req.info
	req := &x.req
	switch {
	case st.TooLarge():
		x.info.Flags |= FlagBadRequest
		x.local(noClusterLabel, http.StatusRequestHeaderFieldsTooLarge, "request headers too large\n")
		return
	case req.method == http.MethodConnect:
		x.local(noClusterLabel, http.StatusMethodNotAllowed, "CONNECT is not supported\n")
		return
	case p.maxBodyBytes > 0 && req.contentLength > p.maxBodyBytes:
		x.info.Flags |= FlagBadRequest
		x.local(noClusterLabel, http.StatusRequestEntityTooLarge, "request body too large\n")
		return
	}
	path, ok := normalisePath(pathOf(req.info.Path))
	if !ok {
		x.info.Flags |= FlagBadRequest
		x.local(noClusterLabel, http.StatusBadRequest, "path climbs above the root\n")
		return
	}
	res, ok := p.routes.match(req.info.Host, req.info.Method, path, req.info.Headers)
	switch {
	case !ok:
		x.info.Flags |= FlagNoRoute
		x.local(noClusterLabel, http.StatusNotFound, "no route\n")
		return
	case res.direct != nil:
		x.info.Flags |= FlagLocalResponse
		x.local(noClusterLabel, res.direct.Status, res.direct.Body)
		return
	case res.redirect != nil:
		x.info.Flags |= FlagLocalResponse
		x.location = string(res.redirect.appendLocation(nil, &req.info))
		x.local(noClusterLabel, res.redirect.code, "")
		return
	}
	x.res = res
	x.info.Cluster = res.cluster
	cl := p.clusters.Get(res.cluster)
	if cl == nil || cl.HealthyCount() == 0 {
		x.info.Flags |= FlagNoHealthyUpstream
		x.local(res.cluster, http.StatusServiceUnavailable, "no healthy upstream\n")
		return
	}
	x.upCl = cl
	if err := cl.StartRequest(); err != nil {
		x.info.Flags |= FlagUpstreamOverflow
		x.local(res.cluster, http.StatusServiceUnavailable, "upstream overflow\n")
		return
	}
	defer cl.EndRequest()
	x.rewrite()
	timeout := p.upstreamTimeout
	if a := res.action; a != nil && a.timeout > 0 {
		timeout = a.timeout
	}
	if p.upstreamH2(true) {
		x.proxyH2(cl, timeout)
	} else {
		x.proxyH1(cl, timeout)
	}
}

// upstreamH2 says whether requests go upstream over HTTP/2, for a
// downstream connection that speaks HTTP/2 (downH2) or not.
func (p *httpProxy) upstreamH2(downH2 bool) bool {
	switch p.upstreamProto {
	case config.ProtocolHTTP2:
		return true
	case config.ProtocolHTTP1:
		return false
	}
	return downH2 // Auto or empty: as the downstream connection
}

// local answers the stream from the proxy. A gRPC request gets a
// trailers-only answer whose grpc-status says what the HTTP status would.
func (x *h2Exchange) local(clusterLabel string, status int, body string) {
	x.answered(clusterLabel, status)
	if x.info.Cluster == "" {
		x.info.Cluster = clusterLabel
	}
	if x.headSent {
		x.st.Reset(http2.ErrCodeInternal)
		return
	}
	x.headSent = true
	if x.req.grpc {
		_ = x.st.WriteHeader([]hpack.HeaderField{
			{Name: ":status", Value: "200"},
			{Name: "content-type", Value: "application/grpc"},
			{Name: "grpc-status", Value: strconv.Itoa(grpcStatusOf(status))},
			{Name: "grpc-message", Value: strings.TrimSpace(body)},
		}, true)
		return
	}
	if !http1.BodyAllowed(x.req.method == http.MethodHead, status) {
		body = ""
	}
	fields := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(status)}}
	if x.location != "" {
		fields = append(fields, hpack.HeaderField{Name: "location", Value: x.location})
	}
	if body != "" {
		fields = append(fields, hpack.HeaderField{Name: "content-type", Value: "text/plain; charset=utf-8"})
	}
	fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
	if x.req.method == http.MethodHead || body == "" {
		_ = x.st.WriteHeader(fields, true)
		return
	}
	if x.st.WriteHeader(fields, false) == nil {
		if n, err := x.st.WriteData([]byte(body), true); err == nil {
			x.info.BytesSent = int64(n)
		}
	}
}

// grpcStatusOf maps a proxy's HTTP status to a gRPC status code, as the
// gRPC HTTP-to-gRPC mapping does.
func grpcStatusOf(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge:
		return 8 // RESOURCE_EXHAUSTED
	}
	return 2 // UNKNOWN
}

// requestEnded reports a request that has no body (nor trailers) to relay.
func (x *h2Exchange) requestEnded() bool {
	return x.st.BodyEnded() && x.st.Buffered() == 0 && len(x.st.Trailer()) == 0
}

// answered counts the request as answered with status by clusterLabel.
func (x *h2Exchange) answered(clusterLabel string, status int) {
	x.info.Status = status
	x.series = x.hc.p.metrics.Answered(clusterLabel, status)
}

// observe records the ended request in the metrics, as the HTTP/1 engine
// does (httpmetrics.go).
func (x *h2Exchange) observe() {
	x.hc.p.metrics.Active().Dec()
	if x.series != nil {
		x.series.Observe(x.info.Duration)
	}
	if x.upCl == nil || x.info.Status == 0 {
		return
	}
	m := x.upCl.Metrics()
	if x.upHost != nil {
		m.Response(x.upHost.Address(), x.info.Status, time.Since(x.upSent))
	} else {
		m.NotSent(x.info.Status)
	}
	if x.info.Flags&FlagUpstreamTimeout != 0 {
		m.Timeout()
	}
}

// rewrite applies the route's path and host rewrites and request header
// operations to the request head that goes upstream (x.req).
func (x *h2Exchange) rewrite() {
	a := x.res.action
	if a == nil {
		return
	}
	r := &x.req
	path, query := r.path, ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i:]
	}
	// As HTTP/1: the rewrite works on the normalised path (checked when
	// routed), escaped again where needed; an unrewritten path goes as sent.
	np, _ := normalisePath([]byte(path))
	if out, ok := a.rewritePath(nil, np, x.res.matched); ok {
		if needsEscape(out) {
			out = appendEscapedPath(nil, out)
		}
		r.path = string(out) + query
	}
	if len(a.hostRewrite) > 0 {
		r.authority = string(a.hostRewrite)
	} else if a.hostHeader != "" {
		if v := fieldValue(r.fields, a.hostHeader); v != "" {
			r.authority = v
		}
	}
	r.fields = applyOps(&a.reqOps, r.fields, &x.info)
}

// applyOps runs header operations on HTTP/2 fields: the fields they touch
// are replaced by their final values (names lower case, as HTTP/2 wants).
func applyOps(ops *headerOps, fs []hpack.HeaderField, info *RequestInfo) []hpack.HeaderField {
	if ops.empty() {
		return fs
	}
	hs := make([]http1.Header, 0, len(fs))
	for _, f := range fs {
		hs = append(hs, http1.Header{Name: []byte(f.Name), Value: []byte(f.Value)})
	}
	buf, resolved := ops.resolve(hs, info, nil, nil)
	out := make([]hpack.HeaderField, 0, len(fs)+len(resolved))
	for _, f := range fs {
		if !ops.touches([]byte(f.Name)) {
			out = append(out, f)
		}
	}
	for _, r := range resolved {
		if r.present {
			out = append(out, hpack.HeaderField{Name: strings.ToLower(r.name), Value: string(buf[r.from:r.to])})
		}
	}
	return out
}

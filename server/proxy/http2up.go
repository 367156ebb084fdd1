package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/h2"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// errBodyLimit: a streamed request body went past max_request_body_bytes.
var errBodyLimit = errors.New("request body larger than max_request_body_bytes")

// h2Pool holds the upstream HTTP/2 connections of a proxy: per host, the
// connections streams are multiplexed on — one, unless the upstream's
// concurrency limit fills it or it is going away.
type h2Pool struct {
	cfg h2.Config
	mu  sync.Mutex
	// conns[host]: open connections; dialing[host]: closed when the dial
	// in flight for host ends.
	conns   map[*cluster.Host][]*h2.Conn
	dialing map[*cluster.Host]chan struct{}
}

func newH2Pool(cfg h2.Config) *h2Pool {
	return &h2Pool{cfg: cfg, conns: map[*cluster.Host][]*h2.Conn{}, dialing: map[*cluster.Host]chan struct{}{}}
}

// get returns a connection to h with a stream reserved on it (see
// h2.Conn.Reserve), dialing one if none has room; fresh reports a dial.
func (hp *h2Pool) get(ctx context.Context, cl *cluster.Cluster, h *cluster.Host) (c *h2.Conn, fresh bool, err error) {
	for {
		hp.mu.Lock()
		for _, c := range hp.conns[h] {
			if c.Reserve() {
				hp.mu.Unlock()
				return c, false, nil
			}
		}
		if wait, ok := hp.dialing[h]; ok {
			hp.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		done := make(chan struct{})
		hp.dialing[h] = done
		hp.mu.Unlock()
		c, err := hp.dial(ctx, cl, h)
		hp.mu.Lock()
		delete(hp.dialing, h)
		close(done)
		if err != nil {
			hp.mu.Unlock()
			return nil, true, err
		}
		hp.conns[h] = append(hp.conns[h], c)
		ok := c.Reserve()
		hp.mu.Unlock()
		if ok {
			return c, true, nil
		}
	}
}

func (hp *h2Pool) dial(ctx context.Context, cl *cluster.Cluster, h *cluster.Host) (*h2.Conn, error) {
	up, err := cl.Connect(ctx, h)
	if err != nil {
		return nil, err
	}
	c, err := h2.NewClient(up.Conn, hp.cfg)
	if err != nil {
		up.Conn.Close()
		return nil, fmt.Errorf("http2 upstream %s: %w", h, err)
	}
	go func() {
		<-c.Done()
		hp.mu.Lock()
		list := hp.conns[h]
		for i, x := range list {
			if x == c {
				hp.conns[h] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		hp.mu.Unlock()
	}()
	return c, nil
}

// closeAll closes every upstream connection.
func (hp *h2Pool) closeAll() {
	hp.mu.Lock()
	var all []*h2.Conn
	for _, list := range hp.conns {
		all = append(all, list...)
	}
	hp.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// upstreamFields composes the upstream request's HTTP/2 head: the
// pseudo-fields, the end-to-end fields (te: trailers kept), and the
// forwarding fields the HTTP/1 engine adds.
func (x *h2Exchange) upstreamFields() []hpack.HeaderField {
	r := &x.req
	fs := make([]hpack.HeaderField, 0, len(r.fields)+6)
	fs = append(fs,
		hpack.HeaderField{Name: ":method", Value: r.method},
		hpack.HeaderField{Name: ":scheme", Value: "http"},
		hpack.HeaderField{Name: ":authority", Value: r.authority},
		hpack.HeaderField{Name: ":path", Value: r.path})
	xff := ""
	for _, f := range r.fields {
		switch f.Name {
		case "host", "x-forwarded-proto":
			continue
		case "x-forwarded-for":
			if x.hc.clientIP != "" {
				xff += f.Value + ", "
				continue
			}
		}
		fs = append(fs, f)
	}
	if x.hc.clientIP != "" {
		fs = append(fs, hpack.HeaderField{Name: "x-forwarded-for", Value: xff + x.hc.clientIP})
	}
	return append(fs, hpack.HeaderField{Name: "x-forwarded-proto", Value: "http"})
}

// deadline is when a gRPC call's grpc-timeout runs out (zero if none).
func (x *h2Exchange) deadline() time.Time {
	if x.req.grpcTimeout <= 0 {
		return time.Time{}
	}
	return x.info.Start.Add(x.req.grpcTimeout)
}

// bodyReadBy bounds one read of an HTTP/1 upstream's answer body, as the
// HTTP/1 engine does: the listener's idle_timeout from now, or the call's
// grpc-timeout when that ends first. An upstream that stops mid-body then
// resets the stream instead of holding it open.
func (x *h2Exchange) bodyReadBy() time.Time {
	by := time.Now().Add(x.hc.p.idleTimeout)
	if d := x.deadline(); !d.IsZero() && d.Before(by) {
		return d
	}
	return by
}

// headTimeout is the wait for the response head: the route's timeout, or
// the call's grpc-timeout when that ends first.
func (x *h2Exchange) headTimeout(route time.Duration) time.Time {
	t := time.Now().Add(route)
	if d := x.deadline(); !d.IsZero() && d.Before(t) {
		return d
	}
	return t
}

// proxyH2 sends the stream to the cluster over HTTP/2 and relays the
// answer: head, body and trailers, each way as they come, so that
// streaming calls stream.
func (x *h2Exchange) proxyH2(cl *cluster.Cluster, timeout time.Duration) {
	p := x.hc.p
	fields := x.upstreamFields()
	end := x.requestEnded()
	var us *h2.Stream
	var lastErr error
	var tried []*cluster.Host
	for attempt := 0; attempt < 3 && us == nil; attempt++ {
		h := cl.Pick(tried)
		if h == nil {
			break
		}
		tried = append(tried, h)
		x.info.Attempts++
		x.info.Upstream = h
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		c, fresh, err := p.h2up.get(ctx, cl, h)
		cancel()
		if fresh {
			x.info.UpstreamConnect = time.Since(start)
		}
		if err != nil {
			x.info.Flags |= FlagUpstreamConnectFail
			lastErr = err
			continue
		}
		us, err = c.OpenStream(fields, end, x.req.method == http.MethodHead)
		if err != nil {
			lastErr = err
			us = nil
		}
	}
	if us == nil {
		x.upstreamFailed(fmt.Errorf("no upstream stream: %w", lastErr))
		return
	}
	h := x.info.Upstream
	h.Acquire()
	defer h.Release()
	sent := time.Now()
	x.upHost, x.upSent = h, sent

	// A client that resets its stream resets the upstream's, and the other
	// way round once the answer began.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-x.st.Aborted():
			us.Reset(http2.ErrCodeCancel)
		case <-us.Aborted():
		case <-stop:
		}
	}()
	bodyErr := make(chan error, 1)
	if !end {
		go func() { bodyErr <- x.relayRequestBody(us) }()
	} else {
		bodyErr <- nil
	}

	us.SetReadDeadline(x.headTimeout(timeout))
	head, err := us.ReadHeader()
	if err != nil {
		if isTimeout(err) {
			us.Reset(http2.ErrCodeCancel)
			x.info.Flags |= FlagUpstreamTimeout
			x.local(x.info.Cluster, http.StatusGatewayTimeout, "upstream timeout\n")
			return
		}
		if be := x.bodyFailure(bodyErr); be != nil {
			return
		}
		x.upstreamFailed(err)
		return
	}
	x.info.UpstreamResponse = time.Since(sent)
	us.SetReadDeadline(x.deadline())
	status, _ := strconv.Atoi(fieldValue(head, ":status"))
	x.answered(x.info.Cluster, status)
	out := make([]hpack.HeaderField, 0, len(head))
	for _, f := range head {
		if h2ConnectionSpecific(f) && f.Name != "te" {
			continue
		}
		out = append(out, f)
	}
	out = x.responseOps(out)
	onlyHead := us.BodyEnded() && us.Buffered() == 0 && len(us.Trailer()) == 0
	x.headSent = true
	if err := x.st.WriteHeader(out, onlyHead); err != nil || onlyHead {
		x.finishBody(bodyErr, us)
		return
	}
	if err := x.relayResponseBody(us); err != nil {
		x.info.Flags |= FlagUpstreamReset
		if isTimeout(err) {
			// The call's grpc-timeout ran out mid-answer.
			us.Reset(http2.ErrCodeCancel)
			_ = x.st.WriteTrailer([]hpack.HeaderField{{Name: "grpc-status", Value: "4"}, {Name: "grpc-message", Value: "deadline exceeded at the proxy"}})
		} else {
			x.st.Reset(resetCode(err))
		}
		x.finishBody(bodyErr, us)
		return
	}
	x.finishBody(bodyErr, us)
}

// finishBody waits for the request body relay to end: the answer is
// complete, so an upstream that stopped reading is fine.
func (x *h2Exchange) finishBody(bodyErr chan error, us *h2.Stream) {
	select {
	case <-bodyErr:
	case <-x.st.Aborted():
	case <-us.Aborted():
	}
}

// bodyFailure answers a request whose body broke a limit while the
// upstream was waited for; nil if the body was not the cause.
func (x *h2Exchange) bodyFailure(bodyErr chan error) error {
	if x.overLimit.Load() {
		x.info.Flags |= FlagBadRequest
		x.local(x.info.Cluster, http.StatusRequestEntityTooLarge, "request body too large\n")
		return errBodyLimit
	}
	select {
	case err := <-bodyErr:
		bodyErr <- err
		if errors.Is(err, errBodyLimit) {
			x.info.Flags |= FlagBadRequest
			x.local(x.info.Cluster, http.StatusRequestEntityTooLarge, "request body too large\n")
			return err
		}
		if err != nil && x.st.Err() != nil {
			x.info.Flags |= FlagDownstreamReset
			return err
		}
	default:
	}
	return nil
}

// relayRequestBody copies the client's body and trailers to the upstream
// stream.
func (x *h2Exchange) relayRequestBody(us *h2.Stream) error {
	rb := x.relayBuf()
	defer x.hc.p.bufs.put(rb)
	buf := rb.b
	limit := x.hc.p.maxBodyBytes
	for {
		n, err := x.st.Read(buf)
		if n > 0 {
			if got := x.rx.Add(int64(n)); limit > 0 && got > limit {
				x.overLimit.Store(true)
				us.Reset(http2.ErrCodeCancel)
				return errBodyLimit
			}
			if _, werr := us.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			if tr := x.st.Trailer(); len(tr) > 0 {
				return us.WriteTrailer(tr)
			}
			return us.CloseWrite()
		}
		if err != nil {
			us.Reset(http2.ErrCodeCancel)
			return err
		}
	}
}

// relayResponseBody copies the upstream's body and trailers to the client.
func (x *h2Exchange) relayResponseBody(us *h2.Stream) error {
	rb := x.relayBuf()
	defer x.hc.p.bufs.put(rb)
	buf := rb.b
	for {
		n, err := us.Read(buf)
		if n > 0 {
			x.info.BytesSent += int64(n)
			if _, werr := x.st.Write(buf[:n]); werr != nil {
				us.Reset(http2.ErrCodeCancel)
				x.info.Flags |= FlagDownstreamReset
				return nil
			}
		}
		if err == io.EOF {
			if tr := us.Trailer(); len(tr) > 0 {
				return x.st.WriteTrailer(tr)
			}
			return x.st.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}

// resetCode is the code a client's stream is reset with when its upstream
// stream failed.
func resetCode(err error) http2.ErrCode {
	var re h2.ResetError
	if errors.As(err, &re) && re.Remote {
		return re.Code
	}
	return http2.ErrCodeInternal
}

// upstreamFailed answers a stream that got no response head.
func (x *h2Exchange) upstreamFailed(err error) {
	status := http.StatusBadGateway
	switch {
	case x.st.Err() != nil:
		x.info.Flags |= FlagDownstreamReset
		return
	case errors.Is(err, cluster.ErrNoHealthyHost):
		status = http.StatusServiceUnavailable
		x.info.Flags |= FlagNoHealthyUpstream
	default:
		x.info.Flags |= FlagUpstreamReset
	}
	x.hc.p.log.WithError(err).WithField("cluster", x.info.Cluster).WithField("status", status).Debug("http2 upstream request failed")
	x.local(x.info.Cluster, status, http.StatusText(status)+"\n")
}

func fieldValue(fs []hpack.HeaderField, name string) string {
	for _, f := range fs {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// h1Up is what one HTTP/1 upstream exchange of an HTTP/2 stream works in,
// taken from the proxy's pool (h1UpPool) so that a stream allocates no
// parser, buffer or field slice of its own: the upstream's bytes, the
// parsed response head (in place in them), the chunked decoder, the request
// head composed, and the answer's HTTP/2 fields with the text they are cut
// from.
type h1Up struct {
	upIn  // upstream reads, and the response head parsed in them
	dec   http1.ChunkedDecoder
	head  []byte          // the request head
	tried []*cluster.Host // the hosts picked so far
	// The answer's fields: their names (lower-cased) and values one after
	// the other in text, made one string, cut at ends (name end, value end
	// for each).
	out  []hpack.HeaderField
	text []byte
	ends []int
}

// h1UpPool pools the h1Up of HTTP/2 streams sent upstream over HTTP/1.
type h1UpPool struct{ pool sync.Pool }

func (p *h1UpPool) get(bufs *bufPool) *h1Up {
	u, ok := p.pool.Get().(*h1Up)
	if !ok {
		u = &h1Up{}
		u.dec.Status = http1.StatusBadGateway
	}
	u.upBuf = bufs.get(upstreamBufSize)
	return u
}

// put gives u back once the exchange is over.
func (p *h1UpPool) put(bufs *bufPool, u *h1Up) {
	bufs.put(u.upBuf)
	u.upBuf, u.ur, u.uw = nil, 0, 0
	u.resp.Reset()
	u.dec.Reset() // no trailers of this answer for the next
	clear(u.out)  // no strings of this answer kept alive, nor hosts
	clear(u.tried)
	u.out, u.tried = u.out[:0], u.tried[:0]
	if cap(u.head) > 64<<10 || cap(u.text) > 64<<10 {
		return // a large head: not kept
	}
	p.pool.Put(u)
}

// h1Hold is an HTTP/2 stream's hold on its HTTP/1 upstream connection:
// given back (pooled or closed) once, by the exchange or by the client's
// reset (the stream's OnAbort), whichever comes first.
type h1Hold struct {
	cl    *cluster.Cluster
	up    *cluster.Conn
	given atomic.Bool
}

func (h *h1Hold) giveBack(reuse bool) {
	if !h.given.CompareAndSwap(false, true) {
		return
	}
	if reuse {
		h.cl.Put(h.up)
	} else {
		h.cl.Discard(h.up)
	}
}

// abort closes the connection under a stream the client reset, which ends
// whatever waits on it.
func (h *h1Hold) abort() { h.giveBack(false) }

// proxyH1 sends the stream to the cluster as an HTTP/1.1 request on a
// pooled connection and relays the answer.
func (x *h2Exchange) proxyH1(cl *cluster.Cluster, timeout time.Duration) {
	p := x.hc.p
	end := x.requestEnded()
	u := p.h1up.get(p.bufs)
	defer p.h1up.put(p.bufs, u)
	u.head = x.appendH1Head(u.head[:0], end)
	replay := end && idempotent(x.req.method)
	up, err := x.connectH1(cl, u, replay, timeout)
	if up == nil {
		x.upstreamFailed(err)
		return
	}
	h := up.Host() // a stale connection's replacement goes to it too
	h.Acquire()
	defer h.Release()
	var hold *h1Hold
	var bodyErr chan error // the body relay's end, for a request with a body
	var sent time.Time
	for {
		hold = &h1Hold{cl: cl, up: up}
		// A client's reset closes the connection if it is still ours,
		// which ends a wait for the answer or a read of its body.
		x.st.OnAbort(hold.abort)
		sent = time.Now()
		_ = up.SetDeadline(x.headTimeout(timeout))
		if end {
			err = x.sendH1(up, u)
		} else if _, err = up.Conn.Write(u.head); err == nil {
			bodyErr = x.startBodyH1(up)
		}
		if err == nil {
			err = x.readH1Head(up, u)
		}
		if err == nil || !replay || !x.staleH1(up, u, err) {
			break
		}
		// A pooled connection the upstream had closed: a replayable
		// request goes again, on a new one (as net/http and the HTTP/1
		// engine do).
		x.st.OnAbort(nil)
		hold.giveBack(false)
		x.info.Attempts++
		if up, err = x.dialH1(cl, h, timeout); err != nil {
			x.upstreamFailed(err)
			return
		}
	}
	defer x.st.OnAbort(nil)
	defer hold.giveBack(false)
	x.upHost, x.upSent = h, sent
	if err != nil {
		x.h1HeadFailed(err, bodyErr)
		return
	}
	x.info.UpstreamResponse = time.Since(sent)
	_ = up.SetDeadline(x.deadline())
	resp := &u.resp
	x.answered(x.info.Cluster, resp.Status)
	isHead := x.req.method == http.MethodHead
	bodyAllowed := http1.BodyAllowed(isHead, resp.Status)
	out := x.responseOps(u.h2Fields(isHead, bodyAllowed))
	x.headSent = true
	// The upstream connection goes back to the pool as soon as the answer
	// is read whole, before its end goes to the client, so that the
	// client's next request finds it.
	reuse := !resp.Close
	switch {
	case !bodyAllowed || resp.ContentLength == 0:
		x.releaseH1(hold, bodyErr, reuse && u.ur == u.uw)
		_ = x.st.WriteHeader(out, true)
		return
	case resp.ContentLength > 0 && int64(u.uw-u.ur) >= resp.ContentLength:
		// The whole body arrived with the head: both go to the client in
		// one write.
		n := resp.ContentLength
		body := u.upBuf.b[u.ur : u.ur+int(n)]
		x.releaseH1(hold, bodyErr, reuse && int64(u.uw-u.ur) == n)
		x.info.BytesSent += n
		if err := x.st.WriteResponse(out, body); err != nil {
			x.info.Flags |= FlagDownstreamReset
		}
		return
	}
	if err := x.st.WriteHeader(out, false); err != nil {
		return
	}
	x.relayH1Body(up, u, hold, bodyErr)
}

// connectH1 takes a pooled connection to a host of cl, or dials one,
// moving to a host not tried yet when a dial fails. For a request that
// cannot go again (replay false), a pooled connection that the upstream
// closed is first found out by a peek, and replaced.
func (x *h2Exchange) connectH1(cl *cluster.Cluster, u *h1Up, replay bool, timeout time.Duration) (*cluster.Conn, error) {
	tried := u.tried[:0]
	defer func() { u.tried = tried }()
	var lastErr error
	for {
		h := cl.Pick(tried)
		if h == nil {
			break
		}
		tried = append(tried, h)
		x.info.Attempts++
		x.info.Upstream = h
		for up := cl.Idle(h); up != nil; up = cl.Idle(h) {
			if replay || !peerClosed(up.Conn) {
				return up, nil
			}
			cl.Discard(up)
		}
		up, err := x.dialH1(cl, h, timeout)
		if err == nil {
			return up, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = cluster.ErrNoHealthyHost
	}
	return nil, lastErr
}

// dialH1 connects to h within timeout.
func (x *h2Exchange) dialH1(cl *cluster.Cluster, h *cluster.Host, timeout time.Duration) (*cluster.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	up, err := cl.Connect(ctx, h)
	x.info.UpstreamConnect = time.Since(start)
	if err != nil {
		x.info.Flags |= FlagUpstreamConnectFail
	}
	return up, err
}

// staleH1 reports an exchange on a pooled connection that failed (not
// timed out) before a byte of an answer, the client still there: the
// upstream had closed the connection.
func (x *h2Exchange) staleH1(up *cluster.Conn, u *h1Up, err error) bool {
	return up.Reused() && u.uw == 0 && !isTimeout(err) && x.st.Err() == nil
}

// idempotent reports a method whose request may be sent twice.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// sendH1 sends a request without a body: from inside the wait for its
// answer, whose first bytes it reads, where the socket allows (rawio.go).
func (x *h2Exchange) sendH1(up *cluster.Conn, u *h1Up) error {
	r := upstreamRaw(up)
	if r == nil {
		_, err := up.Conn.Write(u.head)
		return err
	}
	wrote, n, err := r.sendThenRead(u.head, u.upBuf.b)
	u.uw = n
	if err != nil || wrote == len(u.head) {
		return err
	}
	_, err = up.Conn.Write(u.head[wrote:])
	return err
}

// h1HeadFailed answers a stream whose upstream gave no usable response
// head: 504 for a timeout, 413 for a body over the limit, else 502.
func (x *h2Exchange) h1HeadFailed(err error, bodyErr chan error) {
	if isTimeout(err) {
		x.info.Flags |= FlagUpstreamTimeout
		x.local(x.info.Cluster, http.StatusGatewayTimeout, "upstream timeout\n")
		return
	}
	if bodyErr != nil && x.bodyFailure(bodyErr) != nil {
		return
	}
	x.upstreamFailed(err)
}

// readH1Head reads and parses the upstream's response head, skipping
// informational (1xx) ones.
func (x *h2Exchange) readH1Head(up *cluster.Conn, u *h1Up) error {
	for informational := 0; ; {
		from := 0
		for {
			parsed, err := u.parseHead(x.hc.p.bufs, &from)
			if err != nil {
				return err
			}
			if parsed {
				break
			}
			n, err := up.Conn.Read(u.upBuf.b[u.uw:])
			u.uw += n
			if n == 0 && err != nil {
				return fmt.Errorf("read upstream response: %w", err)
			}
		}
		switch s := u.resp.Status; {
		case s == http.StatusSwitchingProtocols:
			return errors.New("upstream switched protocols, which was not asked for")
		case s < 200:
			if informational++; informational > 8 {
				return errors.New("upstream sent more than 8 informational responses")
			}
			continue
		}
		return nil
	}
}

// h2Fields makes the parsed response head the HTTP/2 answer's fields:
// :status, the end-to-end fields with lower-case names (hop-by-hop ones and
// those Connection names dropped), and the body's length when it is known
// (a HEAD answer keeps the upstream's; 1xx, 204 and 304 have none: HTTP/2
// clients such as Go's take a 304's for a body's). Its strings
// are cut from one, which is all it allocates.
func (u *h1Up) h2Fields(isHead, bodyAllowed bool) []hpack.HeaderField {
	resp := &u.resp
	t, ends := u.text[:0], u.ends[:0]
	t = strconv.AppendInt(t, int64(resp.Status), 10)
	ends = append(ends, len(t))
	for _, f := range resp.Headers {
		switch k := http1.Kind(f.Name); {
		case k.HopByHop(), k == http1.KindContentLength, resp.ConnectionOption(f.Name):
			continue
		}
		t = appendLower(t, f.Name)
		ends = append(ends, len(t))
		t = append(t, f.Value...)
		ends = append(ends, len(t))
	}
	if resp.ContentLength >= 0 && (bodyAllowed || isHead && resp.Status >= 200 && resp.Status != http.StatusNoContent && resp.Status != http.StatusNotModified) {
		t = append(t, "content-length"...)
		ends = append(ends, len(t))
		t = strconv.AppendInt(t, resp.ContentLength, 10)
		ends = append(ends, len(t))
	}
	u.text, u.ends = t, ends
	s := string(t)
	out := append(u.out[:0], hpack.HeaderField{Name: ":status", Value: s[:ends[0]]})
	for i := 1; i+1 < len(ends); i += 2 {
		out = append(out, hpack.HeaderField{Name: s[ends[i-1]:ends[i]], Value: s[ends[i]:ends[i+1]]})
	}
	u.out = out
	return out
}

// h2Trailers makes a chunked body's trailer section HTTP/2 trailer fields
// (the decoder has dropped those that must not pass), cut from one string.
func (u *h1Up) h2Trailers() []hpack.HeaderField {
	raw := u.dec.Trailers()
	if len(raw) == 0 {
		return nil
	}
	t, ends := u.text[:0], u.ends[:0]
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i-1], raw[i+1:] // without its CRLF
		} else {
			raw = nil
		}
		name, value, _ := bytes.Cut(line, []byte(": "))
		t = appendLower(t, name)
		ends = append(ends, len(t))
		t = append(t, value...)
		ends = append(ends, len(t))
	}
	u.text, u.ends = t, ends
	s := string(t)
	out, from := u.out[:0], 0
	for i := 0; i+1 < len(ends); i += 2 {
		out = append(out, hpack.HeaderField{Name: s[from:ends[i]], Value: s[ends[i]:ends[i+1]]})
		from = ends[i+1]
	}
	u.out = out
	return out
}

// appendLower appends an ASCII name in lower case.
func appendLower(b, name []byte) []byte {
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// releaseH1 gives the upstream connection back once the answer is read
// whole: to the pool if reuse and the request went up whole (its body
// relay, if any, ended well), else closed.
func (x *h2Exchange) releaseH1(hold *h1Hold, bodyErr chan error, reuse bool) {
	if bodyErr != nil {
		if x.st.BodyEnded() {
			select { // the client sent all: the relay is ending
			case err := <-bodyErr:
				reuse = reuse && err == nil
			case <-x.st.Aborted():
				reuse = false
			}
		} else {
			reuse = false // the request body is still on its way
		}
	}
	hold.giveBack(reuse)
}

// relayH1Body streams the answer's body to the client, as it is framed
// upstream (a length, chunked with trailers, or up to the close), and gives
// the connection back as soon as it is read whole.
func (x *h2Exchange) relayH1Body(up *cluster.Conn, u *h1Up, hold *h1Hold, bodyErr chan error) {
	resp := &u.resp
	left, chunked := resp.ContentLength, resp.Chunked
	if chunked {
		u.dec.Reset()
	}
	reuse := !resp.Close && !resp.CloseDelimited
	for {
		data, done := u.upBuf.b[u.ur:u.uw], false
		switch {
		case left >= 0:
			if int64(len(data)) >= left {
				reuse = reuse && int64(len(data)) == left // no bytes past the body
				data, done = data[:left], true
			}
			left -= int64(len(data))
			u.ur = u.uw
		case chunked:
			d, n, err := u.dec.Next(data)
			u.ur += n
			if err != nil {
				x.h1BodyFailed(fmt.Errorf("upstream body: %w", err))
				return
			}
			if u.dec.Done() {
				reuse = reuse && u.ur == u.uw
				done = true
			}
			data = d
		default:
			u.ur = u.uw
		}
		x.info.BytesSent += int64(len(data))
		if done {
			x.releaseH1(hold, bodyErr, reuse)
			x.endH1Body(data, u)
			return
		}
		if len(data) > 0 {
			if _, err := x.st.Write(data); err != nil {
				x.info.Flags |= FlagDownstreamReset
				return
			}
		}
		if u.ur < u.uw {
			continue // more chunked framing read
		}
		u.ur, u.uw = 0, 0
		_ = up.SetReadDeadline(x.bodyReadBy())
		n, err := up.Conn.Read(u.upBuf.b)
		u.uw = n
		if n == 0 && err != nil {
			if err == io.EOF && left < 0 && !chunked {
				x.releaseH1(hold, bodyErr, false) // the close was the end
				x.endH1Body(nil, u)
				return
			}
			if err == io.EOF {
				err = errShortBody
			}
			x.h1BodyFailed(err)
			return
		}
	}
}

// endH1Body sends the last body bytes, and the trailers if any, ending the
// stream.
func (x *h2Exchange) endH1Body(data []byte, u *h1Up) {
	var tr []hpack.HeaderField
	if u.resp.Chunked {
		tr = u.h2Trailers()
	}
	if len(tr) == 0 {
		_, _ = x.st.WriteData(data, true)
		return
	}
	if len(data) > 0 {
		if _, err := x.st.Write(data); err != nil {
			return
		}
	}
	_ = x.st.WriteTrailer(tr)
}

// h1BodyFailed resets the client's stream of an answer that broke off.
func (x *h2Exchange) h1BodyFailed(err error) {
	x.hc.p.log.WithError(err).WithField("cluster", x.info.Cluster).Debug("http2 stream: upstream body failed")
	x.info.Flags |= FlagUpstreamReset
	x.st.Reset(http2.ErrCodeInternal)
}

// appendH1Head appends the HTTP/1.1 request head for a downstream HTTP/2
// stream to b: origin-form target, Host from :authority, the end-to-end
// fields with canonical names, the cookies joined (RFC 9113 §8.2.3), the
// forwarding fields, and chunked framing for a body of unknown length.
func (x *h2Exchange) appendH1Head(b []byte, end bool) []byte {
	r := &x.req
	xff := x.hc.clientIP != ""
	b = append(b, r.method...)
	b = append(b, ' ')
	b = append(b, r.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.authority...)
	b = append(b, "\r\n"...)
	cookies, xffs := 0, 0
	for _, f := range r.fields {
		switch f.Name {
		case "host", "content-length", "x-forwarded-proto", "te":
			continue
		case "cookie":
			cookies++
			continue
		case "x-forwarded-for":
			if xff {
				xffs++
				continue
			}
		}
		b = appendCanonicalKey(b, f.Name)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if cookies > 0 {
		b = append(b, "Cookie: "...)
		b = appendValuesOf(b, r.fields, "cookie", "; ")
		b = append(b, "\r\n"...)
	}
	if xff {
		b = append(b, "X-Forwarded-For: "...)
		if xffs > 0 {
			b = appendValuesOf(b, r.fields, "x-forwarded-for", ", ")
			b = append(b, ", "...)
		}
		b = append(b, x.hc.clientIP...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Proto: http\r\n"...)
	switch {
	case r.contentLength >= 0:
		if r.contentLength > 0 || !end {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, r.contentLength, 10)
			b = append(b, "\r\n"...)
		}
	case !end:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, "\r\n"...)
}

// appendValuesOf appends the values of the fields named name, sep between.
func appendValuesOf(b []byte, fs []hpack.HeaderField, name, sep string) []byte {
	first := true
	for _, f := range fs {
		if f.Name != name {
			continue
		}
		if !first {
			b = append(b, sep...)
		}
		first = false
		b = append(b, f.Value...)
	}
	return b
}

// appendCanonicalKey appends name as textproto.CanonicalMIMEHeaderKey
// spells it (upper case at the start and after each '-', lower case
// elsewhere; a name with a byte outside a token as it is), without its
// allocation.
func appendCanonicalKey(b []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		if !httpguts.IsTokenRune(rune(name[i])) {
			return append(b, name...)
		}
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b = append(b, c)
		upper = c == '-'
	}
	return b
}

// startBodyH1 starts the relay of the client's body to up; the channel
// receives its end.
func (x *h2Exchange) startBodyH1(up *cluster.Conn) chan error {
	done := make(chan error, 1)
	go func() { done <- x.relayBodyH1(up) }()
	return done
}

// relayBodyH1 writes the client's body to an HTTP/1 upstream: as is with
// a content-length, else chunked with the trailers at the end, each piece
// in one write with its framing.
func (x *h2Exchange) relayBodyH1(up *cluster.Conn) error {
	const room = 18 // a chunk's size line: 16 hex digits and CRLF
	chunked := x.req.contentLength < 0
	rb := x.relayBuf()
	defer x.hc.p.bufs.put(rb)
	buf := rb.b
	limit := x.hc.p.maxBodyBytes
	for {
		n, err := x.st.Read(buf[room : len(buf)-2])
		if n > 0 {
			if got := x.rx.Add(int64(n)); limit > 0 && got > limit {
				x.overLimit.Store(true)
				_ = up.Conn.Close()
				return errBodyLimit
			}
		}
		from, to := room, room+n
		if chunked && n > 0 {
			var line [room]byte
			size := http1.AppendChunkHeader(line[:0], n)
			from -= copy(buf[room-len(size):room], size)
			to += copy(buf[to:], "\r\n")
		}
		piece := buf[from:to]
		if err == io.EOF && chunked {
			piece = append(piece, "0\r\n"...)
			for _, f := range x.st.Trailer() {
				piece = append(piece, f.Name...)
				piece = append(piece, ": "...)
				piece = append(piece, f.Value...)
				piece = append(piece, "\r\n"...)
			}
			piece = append(piece, "\r\n"...)
		}
		if len(piece) > 0 {
			if _, werr := up.Conn.Write(piece); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// responseOps applies the route's response header operations.
func (x *h2Exchange) responseOps(fs []hpack.HeaderField) []hpack.HeaderField {
	if a := x.res.action; a != nil {
		return applyOps(&a.respOps, fs, &x.info)
	}
	return fs
}

// relayBuf takes a 16 KiB buffer for a body relay from the proxy's pool;
// the relay gives it back when it returns (every stream write copies what
// it is given before it returns).
func (x *h2Exchange) relayBuf() *buffer { return x.hc.p.bufs.get(16 << 10) }

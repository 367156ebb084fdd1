package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/h2"
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

// proxyH1 sends the stream to the cluster as an HTTP/1.1 request on a
// pooled connection and relays the answer.
func (x *h2Exchange) proxyH1(cl *cluster.Cluster, timeout time.Duration) {
	head := x.h1Head()
	end := x.requestEnded()
	var tried []*cluster.Host
	var up *cluster.Conn
	var lastErr error
	for up == nil {
		h := cl.Pick(tried)
		if h == nil {
			break
		}
		tried = append(tried, h)
		x.info.Attempts++
		x.info.Upstream = h
		if up = cl.Idle(h); up != nil {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		c, err := cl.Connect(ctx, h)
		cancel()
		x.info.UpstreamConnect = time.Since(start)
		if err != nil {
			x.info.Flags |= FlagUpstreamConnectFail
			lastErr = err
			continue
		}
		up = c
	}
	if up == nil {
		if lastErr == nil {
			lastErr = cluster.ErrNoHealthyHost
		}
		x.upstreamFailed(lastErr)
		return
	}
	h := up.Host()
	h.Acquire()
	defer h.Release()
	// The connection is given back (pooled or closed) once, by release or
	// at the end; a client's reset closes it if it is still ours.
	var relMu sync.Mutex
	given := false
	giveBack := func(reuse bool) {
		relMu.Lock()
		defer relMu.Unlock()
		if given {
			return
		}
		given = true
		if reuse {
			cl.Put(up)
		} else {
			cl.Discard(up)
		}
	}
	defer giveBack(false)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-x.st.Aborted():
			giveBack(false)
		case <-stop:
		}
	}()
	sent := time.Now()
	x.upHost, x.upSent = h, sent
	_ = up.SetDeadline(x.headTimeout(timeout))
	bw := x.hc.p.h1io.writer(up.Conn)
	if end {
		// Nothing writes to it after this exchange (a body relay could).
		defer x.hc.p.h1io.putWriter(bw)
	}
	if _, err := bw.WriteString(head); err != nil {
		x.upstreamFailed(err)
		return
	}
	bodyErr := make(chan error, 1)
	if end {
		if err := bw.Flush(); err != nil {
			x.upstreamFailed(err)
			return
		}
		bodyErr <- nil
	} else {
		go func() { bodyErr <- x.relayBodyH1(bw, func() { _ = up.Conn.Close() }) }()
	}
	br := x.hc.p.h1io.reader(up.Conn)
	defer x.hc.p.h1io.putReader(br) // after the response body's close below
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(br, &http.Request{Method: x.req.method})
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if err != nil {
		if isTimeout(err) {
			x.info.Flags |= FlagUpstreamTimeout
			x.local(x.info.Cluster, http.StatusGatewayTimeout, "upstream timeout\n")
			return
		}
		if x.bodyFailure(bodyErr) != nil {
			return
		}
		x.upstreamFailed(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		x.upstreamFailed(errors.New("upstream switched protocols, which was not asked for"))
		return
	}
	x.info.UpstreamResponse = time.Since(sent)
	_ = up.SetDeadline(x.deadline())
	x.answered(x.info.Cluster, resp.StatusCode)
	out := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(resp.StatusCode)}}
	hop := connectionOptions(resp.Header)
	for name, vs := range resp.Header {
		lname := strings.ToLower(name)
		if hop[lname] || h2ConnectionSpecific(hpack.HeaderField{Name: lname}) || lname == "te" || lname == "trailer" || lname == "content-length" {
			continue
		}
		for _, v := range vs {
			out = append(out, hpack.HeaderField{Name: lname, Value: v})
		}
	}
	if resp.ContentLength >= 0 && !(x.req.method == http.MethodHead && resp.ContentLength == 0) {
		out = append(out, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(resp.ContentLength, 10)})
	}
	out = x.responseOps(out)
	x.headSent = true
	// The upstream connection goes back to the pool as soon as the answer
	// is read whole, before its end goes to the client, so that the
	// client's next request finds it.
	release := func() {
		var berr error
		if x.st.BodyEnded() {
			select { // the client sent all: the relay is ending
			case berr = <-bodyErr:
			case <-x.st.Aborted():
				berr = errClientGone
			}
		} else {
			berr = errors.New("request body still on its way")
		}
		giveBack(berr == nil && !resp.Close && br.Buffered() == 0)
	}
	noBody := resp.ContentLength == 0 && len(resp.TransferEncoding) == 0 || x.req.method == http.MethodHead ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	if noBody {
		release()
		_ = x.st.WriteHeader(out, true)
		return
	}
	if n := resp.ContentLength; n > 0 && n <= 16<<10 && int64(br.Buffered()) >= n {
		// The whole body has arrived with the head: both go to the client
		// in one write.
		rb := x.relayBuf()
		defer x.hc.p.bufs.put(rb)
		if _, err := io.ReadFull(resp.Body, rb.b[:n]); err != nil {
			x.info.Flags |= FlagUpstreamReset
			x.st.Reset(http2.ErrCodeInternal)
			return
		}
		x.info.BytesSent += n
		release()
		if err := x.st.WriteResponse(out, rb.b[:n]); err != nil {
			x.info.Flags |= FlagDownstreamReset
		}
		return
	}
	if err := x.st.WriteHeader(out, false); err != nil {
		return
	}
	x.relayH1Response(resp, release)
}

// relayH1Response streams an HTTP/1 response body and its trailers to the
// client; true if it arrived whole.
func (x *h2Exchange) relayH1Response(resp *http.Response, release func()) {
	rb := x.relayBuf()
	defer x.hc.p.bufs.put(rb)
	buf := rb.b
	for {
		n, err := resp.Body.Read(buf)
		x.info.BytesSent += int64(n)
		if err == io.EOF {
			release()
			var tr []hpack.HeaderField
			for name, vs := range resp.Trailer {
				for _, v := range vs {
					tr = append(tr, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
				}
			}
			if len(tr) == 0 {
				_, _ = x.st.WriteData(buf[:n], true)
				return
			}
			if _, werr := x.st.Write(buf[:n]); werr == nil {
				_ = x.st.WriteTrailer(tr)
			}
			return
		}
		if n > 0 {
			if _, werr := x.st.Write(buf[:n]); werr != nil {
				x.info.Flags |= FlagDownstreamReset
				return
			}
		}
		if err != nil {
			x.info.Flags |= FlagUpstreamReset
			x.st.Reset(http2.ErrCodeInternal)
			return
		}
	}
}

// connectionOptions are the fields a Connection header names.
func connectionOptions(h http.Header) map[string]bool {
	m := map[string]bool{}
	for _, v := range h.Values("Connection") {
		for _, o := range strings.Split(v, ",") {
			if o = strings.ToLower(strings.TrimSpace(o)); o != "" {
				m[o] = true
			}
		}
	}
	return m
}

// h1Head composes the HTTP/1.1 request head for a downstream HTTP/2
// stream: origin-form target, Host from :authority, the end-to-end fields,
// the forwarding fields, and chunked framing for a body of unknown length.
func (x *h2Exchange) h1Head() string {
	r := &x.req
	var b strings.Builder
	b.WriteString(r.method)
	b.WriteByte(' ')
	b.WriteString(r.path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(r.authority)
	b.WriteString("\r\n")
	xff := ""
	cookies := []string{}
	for _, f := range r.fields {
		switch f.Name {
		case "host", "content-length", "x-forwarded-proto", "te":
			continue
		case "cookie":
			cookies = append(cookies, f.Value) // RFC 9113 §8.2.3: joined for HTTP/1
			continue
		case "x-forwarded-for":
			if x.hc.clientIP != "" {
				xff += f.Value + ", "
				continue
			}
		}
		b.WriteString(textproto.CanonicalMIMEHeaderKey(f.Name))
		b.WriteString(": ")
		b.WriteString(f.Value)
		b.WriteString("\r\n")
	}
	if len(cookies) > 0 {
		b.WriteString("Cookie: " + strings.Join(cookies, "; ") + "\r\n")
	}
	if x.hc.clientIP != "" {
		b.WriteString("X-Forwarded-For: " + xff + x.hc.clientIP + "\r\n")
	}
	b.WriteString("X-Forwarded-Proto: http\r\n")
	end := x.requestEnded()
	switch {
	case r.contentLength >= 0:
		if r.contentLength > 0 || !end {
			b.WriteString("Content-Length: " + strconv.FormatInt(r.contentLength, 10) + "\r\n")
		}
	case !end:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// relayBodyH1 writes the client's body to an HTTP/1 upstream: as is with
// a content-length, else chunked with the trailers at the end.
func (x *h2Exchange) relayBodyH1(bw *bufio.Writer, abort func()) error {
	chunked := x.req.contentLength < 0
	rb := x.relayBuf()
	defer x.hc.p.bufs.put(rb)
	buf := rb.b
	limit := x.hc.p.maxBodyBytes
	for {
		if err := bw.Flush(); err != nil {
			return err
		}
		n, err := x.st.Read(buf)
		if n > 0 {
			if got := x.rx.Add(int64(n)); limit > 0 && got > limit {
				x.overLimit.Store(true)
				abort()
				return errBodyLimit
			}
			if chunked {
				fmt.Fprintf(bw, "%x\r\n", n)
			}
			if _, werr := bw.Write(buf[:n]); werr != nil {
				return werr
			}
			if chunked {
				_, _ = bw.WriteString("\r\n")
			}
		}
		if err == io.EOF {
			if chunked {
				_, _ = bw.WriteString("0\r\n")
				for _, f := range x.st.Trailer() {
					_, _ = bw.WriteString(f.Name + ": " + f.Value + "\r\n")
				}
				_, _ = bw.WriteString("\r\n")
			}
			return bw.Flush()
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

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// scriptedUpstream is an HTTP/1 backend that answers each request with the
// raw bytes its script gives for the request's path, framing and all, so
// that the proxy's reading of every kind of answer can be tested. A path
// that starts with /close has the connection closed after the answer,
// /close-unanswered without one; /hang gets no answer; /partial gets a head and part of a body, then
// nothing. heads receives each request head as sent; gone, the number of
// each connection the proxy closed.
type scriptedUpstream struct {
	addr  string
	conns atomic.Int32
	heads chan string
	gone  chan int32
	// closed receives the number of each connection it closed after a
	// /close path's answer.
	closed chan int32
}

func startScripted(t *testing.T, script map[string]string) *scriptedUpstream {
	t.Helper()
	l := listen(t)
	s := &scriptedUpstream{addr: l.Addr().String(), heads: make(chan string, 64), gone: make(chan int32, 64), closed: make(chan int32, 64)}
	t.Cleanup(func() { l.Close() })
	acceptEach(l, func(c net.Conn) {
		go s.serve(c, s.conns.Add(1), script)
	})
	return s
}

func (s *scriptedUpstream) serve(c net.Conn, n int32, script map[string]string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		head, length, err := readRawHead(br)
		if err != nil {
			if err == io.EOF {
				s.gone <- n
			}
			return
		}
		if _, err := io.CopyN(io.Discard, br, length); err != nil {
			return
		}
		select {
		case s.heads <- head:
		default:
		}
		path := strings.Fields(head)[1]
		if path == "/hang" || path == "/partial" {
			io.WriteString(c, script[path])
			// Nothing more: the proxy's close ends the wait.
			if _, err := br.ReadByte(); err == io.EOF {
				s.gone <- n
			}
			return
		}
		if path == "/close-unanswered" {
			c.Close()
			s.closed <- n
			return
		}
		answer, ok := script[path]
		if !ok {
			answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		if strings.HasPrefix(path, "/close") {
			c.Close()
			s.closed <- n
			return
		}
	}
}

// readRawHead reads a request head as sent and the length of its body.
func readRawHead(br *bufio.Reader) (string, int64, error) {
	var b strings.Builder
	var length int64
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", 0, err
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String(), length, nil
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "content-length") {
			length, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
}

func chunkedBody(n, chunk int) (wire, body string) {
	p := string(payload(n))
	var w strings.Builder
	for i := 0; i < n; i += chunk {
		part := p[i:min(i+chunk, n)]
		fmt.Fprintf(&w, "%x\r\n%s\r\n", len(part), part)
	}
	w.WriteString("0\r\n\r\n")
	return w.String(), p
}

// An h2c client's requests to an HTTP/1 upstream get every kind of HTTP/1
// answer right: each framing, bodyless statuses, informational heads
// skipped, hop-by-hop fields dropped, trailers passed on, and a malformed
// or broken answer refused; and the upstream connection goes back to the
// pool exactly when the answer was read whole and framed right.
func TestH2ToH1AnswerFraming(t *testing.T) {
	bigChunked, bigBody := chunkedBody(140000, 7000)
	bigCL := string(payload(200000))
	bigValue := strings.Repeat("v", 30000) // a head over the first buffer's 16 KiB
	be := startScripted(t, map[string]string{
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nContent-Type: text/plain\r\n\r\n" +
			"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: abc\r\nX-Other: def\r\n\r\n",
		"/big-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + bigChunked,
		"/big-cl":      "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + bigCL,
		"/cl-conflict": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"/early":       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
		"/head":        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
		"/head-zero":   "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"/head-chunk":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"/304":         "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nEtag: \"x\"\r\n\r\n",
		"/204":         "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
		"/hop": "HTTP/1.1 200 OK\r\nConnection: X-Hop, keep-alive\r\nKeep-Alive: timeout=5\r\nX-Hop: secret\r\n" +
			"Proxy-Authenticate: Basic\r\nX-Mixed-Case: Yes\r\nContent-Length: 2\r\n\r\nok",
		"/close-eof":       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
		"/connclose":       "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"/badstatus":       "HTTP/1.1 2000 OK\r\n\r\n",
		"/close-bad":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
		"/close-short":     "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		"/extra":           "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",
		"/http10":          "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/big-head":        "HTTP/1.1 200 OK\r\nX-Big: " + bigValue + "\r\nContent-Length: 2\r\n\r\nok",
		"/close-huge-head": "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("v", 70000) + "\r\n\r\n",
		"/chunked-extra":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nGARBAGE",
		"/big-cl-extra":    "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + bigCL + "XX",
	})
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		singleRoute(0), appCluster(be.addr))
	cl := h2cClient()
	getOK := func() {
		t.Helper()
		if resp, body := get(t, cl, "http://"+e.addr+"/ok"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("/ok: %d %q", resp.StatusCode, body)
		}
	}
	getOK()
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		broken       bool // the body breaks off: a reset stream
		length       string
		header       map[string]string // "" for a field that must be absent
		trailer      map[string]string
		reuse        bool
	}{
		{method: "GET", path: "/chunked", status: 200, body: "hello world", header: map[string]string{"Content-Type": "text/plain", "Trailer": ""},
			trailer: map[string]string{"X-Sum": "abc", "X-Other": "def"}, reuse: true},
		{method: "GET", path: "/big-chunked", status: 200, body: bigBody, reuse: true},
		{method: "GET", path: "/big-cl", status: 200, body: bigCL, length: "200000", reuse: true},
		{method: "GET", path: "/cl-conflict", status: 502, body: "Bad Gateway\n", length: "12"},
		{method: "GET", path: "/early", status: 200, body: "final", length: "5", header: map[string]string{"Link": ""}, reuse: true},
		{method: "HEAD", path: "/head", status: 200, length: "1234", reuse: true},
		{method: "HEAD", path: "/head-zero", status: 200, length: "0", reuse: true},
		{method: "HEAD", path: "/head-chunk", status: 200, reuse: true},
		{method: "GET", path: "/304", status: 304, header: map[string]string{"Etag": `"x"`}, reuse: true},
		{method: "GET", path: "/204", status: 204, header: map[string]string{"X-A": "1"}, reuse: true},
		{method: "GET", path: "/hop", status: 200, body: "ok", length: "2", reuse: true, header: map[string]string{
			"X-Hop": "", "Keep-Alive": "", "Connection": "", "Proxy-Authenticate": "", "X-Mixed-Case": "Yes"}},
		{method: "GET", path: "/close-eof", status: 200, body: "until the close"},
		{method: "GET", path: "/connclose", status: 200, body: "ok", length: "2"},
		{method: "GET", path: "/badstatus", status: 502, body: "Bad Gateway\n", length: "12"},
		{method: "GET", path: "/close-bad", status: 200, broken: true},
		{method: "GET", path: "/close-short", status: 200, length: "10", broken: true},
		{method: "GET", path: "/extra", status: 200, body: "ok", length: "2"},
		{method: "GET", path: "/http10", status: 200, body: "ok", length: "2"},
		{method: "GET", path: "/chunked-extra", status: 200, body: "ok"},
		{method: "GET", path: "/big-head", status: 200, body: "ok", length: "2", header: map[string]string{"X-Big": bigValue}, reuse: true},
		{method: "GET", path: "/close-huge-head", status: 502, body: "Bad Gateway\n", length: "12"},
		{method: "GET", path: "/big-cl-extra", status: 200, body: bigCL, length: "200000"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://"+e.addr+tc.path, nil)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.broken {
				if err == nil {
					t.Fatalf("body %q read whole, want the stream reset", body)
				}
			} else if err != nil || string(body) != tc.body {
				t.Fatalf("body %d bytes %.40q, %v; want %d bytes %.40q", len(body), body, err, len(tc.body), tc.body)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Content-Length"); got != tc.length {
				t.Errorf("content-length %q, want %q", got, tc.length)
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q (%v)", k, got, v, resp.Header)
				}
			}
			if !tc.broken && len(resp.Trailer) != len(tc.trailer) {
				t.Errorf("trailer %v, want %v", resp.Trailer, tc.trailer)
			}
			for k, v := range tc.trailer {
				if got := resp.Trailer.Get(k); got != v {
					t.Errorf("trailer %s = %q, want %q", k, got, v)
				}
			}
			// The next request finds the connection in the pool, or
			// dials a new one.
			before := be.conns.Load()
			getOK()
			if reused := be.conns.Load() == before; reused != tc.reuse {
				t.Errorf("upstream connection reused: %v, want %v", reused, tc.reuse)
			}
		})
	}
}

// The HTTP/1 request an h2c stream becomes: origin-form, Host from
// :authority, canonical field names, the cookies on one line, the
// forwarding fields added to, TE and the HTTP/2 framing left behind.
func TestH2ToH1RequestHead(t *testing.T) {
	be := startScripted(t, nil)
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		singleRoute(0), appCluster(be.addr))
	cl := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+e.addr+"/h?q=1", nil)
	req.Header.Set("x-custom-name", "v")
	req.Header.Set("Te", "trailers")
	req.Header.Add("X-Forwarded-For", "1.2.3.4")
	req.Header.Add("X-Forwarded-For", "5.6.7.8")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.AddCookie(&http.Cookie{Name: "a", Value: "1"})
	req.AddCookie(&http.Cookie{Name: "b", Value: "2"})
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	head := <-be.heads
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	if lines[0] != "GET /h?q=1 HTTP/1.1" || lines[1] != "Host: "+e.addr {
		t.Fatalf("request line and Host: %q", lines[:2])
	}
	want := map[string]bool{"X-Custom-Name: v": false, "Cookie: a=1; b=2": false,
		"X-Forwarded-For: 1.2.3.4, 5.6.7.8, 127.0.0.1": false, "X-Forwarded-Proto: http": false}
	for _, l := range lines[2:] {
		if _, ok := want[l]; ok {
			want[l] = true
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		switch textproto.CanonicalMIMEHeaderKey(name) {
		case "Te", "Cookie", "X-Forwarded-For", "X-Forwarded-Proto", "Content-Length", "Transfer-Encoding", "Host":
			t.Errorf("field line %q in %q", l, head)
		}
		if name != textproto.CanonicalMIMEHeaderKey(name) {
			t.Errorf("field name %q not canonical", name)
		}
	}
	for l, seen := range want {
		if !seen {
			t.Errorf("no field line %q in %q", l, head)
		}
	}
}

func TestAppendCanonicalKey(t *testing.T) {
	for _, name := range []string{"a", "content-type", "x-forwarded-for", "www-authenticate", "x--y", "-a", "a-", "x_y-z",
		"Already-Canonical", "mIxEd-CaSe", "dns-01", "a b", "\xff-x", "x.y-z", ""} {
		if got, want := string(appendCanonicalKey(nil, name)), textproto.CanonicalMIMEHeaderKey(name); got != want {
			t.Errorf("%q: %q, want %q", name, got, want)
		}
	}
}

// A client that resets its stream has the upstream connection under it
// closed at once, while it waits for the answer's head and while the
// answer's body comes; the proxy serves on. An answer that does not come
// within the route's timeout is a 504.
func TestH2ToH1ClientResetClosesTheUpstream(t *testing.T) {
	be := startScripted(t, map[string]string{
		"/partial": "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nthe start",
	})
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		singleRoute(30*time.Second), appCluster(be.addr))
	cl := h2cClient()
	for _, path := range []string{"/hang", "/partial"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.addr+path, nil)
		done := make(chan error, 1)
		go func() {
			resp, err := cl.Do(req)
			if err == nil {
				buf := make([]byte, 9)
				_, err = io.ReadFull(resp.Body, buf)
				if err == nil && string(buf) != "the start" {
					err = fmt.Errorf("body starts %q", buf)
				}
				if err == nil {
					done <- nil
					_, err = io.ReadAll(resp.Body) // until the cancel
				}
				resp.Body.Close()
			}
			done <- err
		}()
		if path == "/partial" {
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		} else {
			<-be.heads // the request is upstream
		}
		cancel()
		select {
		case <-be.gone:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the upstream connection of a reset stream was not closed", path)
		}
		<-done
		if resp, body := get(t, cl, "http://"+e.addr+"/ok"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("after the reset of %s: %d %q", path, resp.StatusCode, body)
		}
	}

	// The route's timeout.
	e2 := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		singleRoute(200*time.Millisecond), appCluster(be.addr))
	resp, _ := get(t, cl, "http://"+e2.addr+"/hang")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("no answer within the timeout: %d, want 504", resp.StatusCode)
	}
	select {
	case <-be.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection of a timed-out request was not closed")
	}
}

// A pooled upstream connection that the upstream closed while it idled
// (its keep-alive timeout) is not the client's 502: a replayable request
// goes again on a new connection when the first fails; one that cannot go
// twice (a body, or a method that is not idempotent) is sent on a pooled
// connection only after a peek found it open.
func TestH2ToH1StalePooledConnection(t *testing.T) {
	be := startScripted(t, map[string]string{"/close-quietly": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"})
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1},
		singleRoute(0), appCluster(be.addr))
	cl := h2cClient()
	do := func(method, path string, body io.Reader) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+e.addr+path, body)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, b)
		}
	}
	// The GET after goes out on the closed connection, fails, and goes
	// again: whether the close has arrived yet or not.
	do("GET", "/close-quietly", nil)
	do("GET", "/ok", nil)
	if n := be.conns.Load(); n != 2 {
		t.Errorf("upstream connections = %d, want 2", n)
	}
	<-be.closed
	for _, tc := range []struct {
		method string
		body   io.Reader
	}{{"POST", strings.NewReader("body")}, {"DELETE", nil}} {
		do("GET", "/close-quietly", nil)
		<-be.closed // and the upstream's close has reached the proxy's socket
		before := be.conns.Load()
		do(tc.method, "/ok", tc.body)
		if n := be.conns.Load(); n != before+1 {
			t.Errorf("%s: upstream connections = %d, want %d", tc.method, n, before+1)
		}
	}
	// A request that reached the upstream, which closed without an
	// answer, is not sent again unless it is replayable.
	for _, tc := range []struct {
		method string
		sent   int
	}{{"DELETE", 1}, {"GET", 2}} {
		do("GET", "/ok", nil) // a pooled connection to send it on
		for len(be.heads) > 0 {
			<-be.heads
		}
		req, _ := http.NewRequest(tc.method, "http://"+e.addr+"/close-unanswered", nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 || len(be.heads) != tc.sent {
			t.Errorf("%s to an upstream that closes without answering: %d, sent %d times; want 502, %d", tc.method, resp.StatusCode, len(be.heads), tc.sent)
		}
		for range tc.sent {
			<-be.closed
		}
	}
}

// An HTTP/1 upstream that stops in the middle of its answer's body has the
// stream reset once no byte came for the listener's idle_timeout, as the
// HTTP/1 engine has it, or at the call's grpc-timeout when that comes
// first, instead of holding the stream (and the upstream connection) open
// until the client gives up.
func TestH2ToH1StalledBodyEndsAtTheIdleTimeout(t *testing.T) {
	be := startScripted(t, map[string]string{
		"/partial": "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nthe start",
	})
	const bound = 300 * time.Millisecond
	for _, tc := range []struct {
		name        string
		idle        time.Duration
		grpcTimeout string
	}{
		{"idle_timeout", bound, ""},
		{"grpc-timeout", 30 * time.Second, "300m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1,
				IdleTimeout: config.Duration{Duration: tc.idle}}, singleRoute(30*time.Second), appCluster(be.addr))
			cl := h2cClient()
			req, _ := http.NewRequest("GET", "http://"+e.addr+"/partial", nil)
			if tc.grpcTimeout != "" {
				req.Header.Set("Grpc-Timeout", tc.grpcTimeout)
			}
			// The proxy reads the body after the request went out: not
			// before start, so neither bound can end the stream before
			// start+bound.
			start := time.Now()
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 9)
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "the start" {
				t.Fatalf("body starts %q, %v", buf, err)
			}
			ended := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(resp.Body)
				ended <- err
			}()
			select {
			case err := <-ended:
				if err == nil {
					t.Fatal("the stalled body ended without an error")
				}
				if took := time.Since(start); took < bound {
					t.Fatalf("the stream ended %v after the request, before the %v bound", took, bound)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a stalled upstream body held the stream for 5 s")
			}
			select {
			case <-be.gone:
			case <-time.After(5 * time.Second):
				t.Fatal("the stalled upstream connection was not closed")
			}
			if resp, body := get(t, cl, "http://"+e.addr+"/ok"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("after the stalled body: %d %q", resp.StatusCode, body)
			}
		})
	}
}

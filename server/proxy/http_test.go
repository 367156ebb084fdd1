package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

// backend is an httptest server that counts its connections.
type backend struct {
	*httptest.Server
	conns atomic.Int32
}

func startBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{Server: httptest.NewUnstartedServer(h)}
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

type httpEnv struct {
	p    *httpProxy
	addr string
	reg  *stats.Registry
	m    *cluster.Manager
}

func httpListener(cfg config.HTTPProxyConfig) config.Listener {
	return config.Listener{Name: "web", FilterChains: []config.FilterChain{{Filters: []config.Filter{{
		Type: config.FilterHTTPProxy, HTTP: &cfg,
	}}}}}
}

func startHTTP(t *testing.T, cfg config.HTTPProxyConfig, router *config.Router, clusters ...config.Cluster) *httpEnv {
	t.Helper()
	return startTunedHTTP(t, nil, cfg, router, clusters...)
}

// startTunedHTTP is startHTTP with tune applied to the proxy before it serves.
func startTunedHTTP(t *testing.T, tune func(*httpProxy), cfg config.HTTPProxyConfig, router *config.Router, clusters ...config.Cluster) *httpEnv {
	t.Helper()
	reg := stats.New()
	m := newManager(t, reg, clusters...)
	p, err := newHTTP(httpListener(cfg), router, m, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(p)
	}
	return &httpEnv{p: p, addr: serve(t, p), reg: reg, m: m}
}

// singleRoute routes every request for any host to cluster "app".
func singleRoute(timeout time.Duration) *config.Router {
	return &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/direct"}, DirectResponse: &config.DirectResponse{Status: 418, Body: "teapot"}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app", Timeout: config.Duration{Duration: timeout}}},
	}}}}
}

func appCluster(hosts ...string) config.Cluster {
	c := config.Cluster{Name: "app"}
	for _, h := range hosts {
		c.Hosts = append(c.Hosts, config.Host{Address: h})
	}
	return c
}

func (e *httpEnv) client() *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (e *httpEnv) requests(cluster, class string) float64 {
	return e.reg.Counter("http.downstream_rq_total", "", "listener", "web", "cluster", cluster, "status_class", class).Value()
}

func (e *httpEnv) downstreamConns() float64 {
	return e.reg.Counter("listener.downstream_cx_total", "", "listener", "web").Value()
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

func TestHTTPKeepAliveBothSides(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s query=%s host=%s", r.URL.Path, r.URL.RawQuery, r.Host)
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := e.client()
	for i := range 5 {
		resp, body := get(t, c, fmt.Sprintf("http://%s/a/b?i=%d", e.addr, i))
		want := fmt.Sprintf("path=/a/b query=i=%d host=%s", i, e.addr)
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	if n := e.downstreamConns(); n != 1 {
		t.Errorf("downstream connections = %v, want 1", n)
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("upstream connections = %d, want 1", n)
	}
	if n := e.requests("app", "2xx"); n != 5 {
		t.Errorf("rq_total{app,2xx} = %v, want 5", n)
	}
	if rx := e.reg.Counter("listener.downstream_cx_rx_bytes_total", "", "listener", "web").Value(); rx == 0 {
		t.Error("rx bytes not counted")
	}
}

func TestHTTPForwardedAndHopByHop(t *testing.T) {
	type seen struct{ xff, xfp, custom, keepAlive, proxyAuth, te, conn, endToEnd string }
	got := make(chan seen, 1)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got <- seen{
			xff: r.Header.Get("X-Forwarded-For"), xfp: r.Header.Get("X-Forwarded-Proto"),
			custom: r.Header.Get("X-Hop"), keepAlive: r.Header.Get("Keep-Alive"),
			proxyAuth: r.Header.Get("Proxy-Authorization"), te: r.Header.Get("Te"),
			conn: r.Header.Get("Connection"), endToEnd: r.Header.Get("X-End"),
		}
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Resp-End", "kept")
		io.WriteString(w, "ok")
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\n"+
		"Keep-Alive: 300\r\nProxy-Authorization: secret\r\nTE: trailers\r\nX-End: kept\r\n"+
		"X-Forwarded-For: 10.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	if s.xff != "10.0.0.1, 127.0.0.1" || s.xfp != "http" {
		t.Errorf("backend saw X-Forwarded-For %q, X-Forwarded-Proto %q", s.xff, s.xfp)
	}
	if s.custom != "" || s.keepAlive != "" || s.proxyAuth != "" || s.te != "" || s.conn != "" {
		t.Errorf("hop-by-hop headers reached the backend: %+v", s)
	}
	if s.endToEnd != "kept" {
		t.Errorf("end-to-end header lost: %+v", s)
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Connection"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("response kept hop-by-hop %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-Resp-End") != "kept" {
		t.Error("response lost an end-to-end header")
	}
}

func TestHTTPChunkedStreamsBothWays(t *testing.T) {
	var receivedLen atomic.Int64
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			t.Error(err)
		}
		w.WriteHeader(200)
		n, _ := io.Copy(flushWriter{w}, r.Body)
		receivedLen.Store(n)
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))

	data := payload(10 << 20)
	first := 1 << 20
	pr, pw := io.Pipe()
	responding := make(chan struct{})
	go func() {
		pw.Write(data[:first])
		// The rest goes only once response bytes arrive: a proxy that
		// buffered either direction would never get here.
		select {
		case <-responding:
		case <-time.After(15 * time.Second):
		}
		pw.Write(data[first:])
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.addr+"/echo", pr)
	resp, err := e.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("response transfer-encoding %v, want chunked", resp.TransferEncoding)
	}
	head := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	close(responding)
	h := sha256.New()
	h.Write(head)
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if n+1 != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Of(data)) {
		t.Fatalf("echoed body differs: %d bytes, want %d", n+1, len(data))
	}
	if receivedLen.Load() != int64(len(data)) {
		t.Fatalf("backend received %d bytes, want %d", receivedLen.Load(), len(data))
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	http.NewResponseController(f.w).Flush()
	return n, err
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestHTTPLargeContentLengthBody(t *testing.T) {
	data := payload(3 << 20)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		if !bytes.Equal(got, data) || r.ContentLength != int64(len(data)) {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data)
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := e.client()
	for range 2 {
		resp, err := c.Post("http://"+e.addr+"/up", "application/octet-stream", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) || !bytes.Equal(got, data) {
			t.Fatalf("status %d, length %d, err %v, body equal %v", resp.StatusCode, resp.ContentLength, err, bytes.Equal(got, data))
		}
	}
	if n := e.downstreamConns(); n != 1 {
		t.Errorf("downstream connections = %v, want 1", n)
	}
}

func TestHTTPErrorStatuses(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	hangup := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	router := &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"svc"}, Routers: []config.Route{
		{Match: config.RouteMatch{Path: "/refused"}, Route: &config.RouteAction{ClusterName: "refused"}},
		{Match: config.RouteMatch{Path: "/hangup"}, Route: &config.RouteAction{ClusterName: "hangup"}},
		{Match: config.RouteMatch{Path: "/empty"}, Route: &config.RouteAction{ClusterName: "empty"}},
		{Match: config.RouteMatch{Path: "/slow"}, Route: &config.RouteAction{ClusterName: "slow",
			Timeout: config.Duration{Duration: 100 * time.Millisecond}}},
		{Match: config.RouteMatch{Path: "/direct"}, DirectResponse: &config.DirectResponse{Status: 201, Body: "made"}},
	}}}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router,
		config.Cluster{Name: "refused", Hosts: []config.Host{{Address: closedAddr(t)}}},
		config.Cluster{Name: "hangup", Hosts: []config.Host{{Address: hangup.addr()}}},
		config.Cluster{Name: "empty"},
		config.Cluster{Name: "slow", Hosts: []config.Host{{Address: slow.addr()}}},
	)
	c := e.client()
	cases := []struct {
		host, path string
		status     int
		body       string
		cluster    string
	}{
		{"svc", "/refused", 502, "", "refused"},
		{"svc", "/hangup", 502, "", "hangup"},
		{"svc", "/empty", 503, "", "empty"},
		{"svc", "/slow", 504, "", "slow"},
		{"svc", "/nope", 404, "", "none"},
		{"other", "/direct", 404, "", "none"},
		{"svc:8080", "/direct", 201, "made", "none"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.addr+tc.path, nil)
		req.Host = tc.host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s%s: %v", tc.host, tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.body != "" && string(b) != tc.body) {
			t.Errorf("%s%s: %d %q, want %d %q", tc.host, tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
	}
	for _, w := range []struct {
		cluster, class string
		n              float64
	}{{"refused", "5xx", 1}, {"hangup", "5xx", 1}, {"empty", "5xx", 1}, {"slow", "5xx", 1}, {"none", "4xx", 2}, {"none", "2xx", 1}} {
		if got := e.requests(w.cluster, w.class); got != w.n {
			t.Errorf("rq_total{%s,%s} = %v, want %v", w.cluster, w.class, got, w.n)
		}
	}
	// Error responses keep the connection.
	if n := e.downstreamConns(); n != 1 {
		t.Errorf("downstream connections = %v, want 1", n)
	}
}

func TestHTTP503WhenHealthCheckFails(t *testing.T) {
	hc := &config.HealthCheck{Interval: config.Duration{Duration: 10 * time.Millisecond},
		Timeout: config.Duration{Duration: time.Second}, HealthyThreshold: 1, UnhealthyThreshold: 1}
	cl := appCluster(closedAddr(t))
	cl.HealthCheck = hc
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), cl)
	e.m.Start(t.Context())
	waitFor(t, "host to go unhealthy", func() bool { return e.m.Get("app").HealthyCount() == 0 })
	resp, _ := get(t, e.client(), "http://"+e.addr+"/")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

func TestHTTPUpstreamTimeoutFromConfig(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	e := startHTTP(t, config.HTTPProxyConfig{UpstreamTimeout: config.Duration{Duration: 50 * time.Millisecond}},
		singleRoute(0), appCluster(be.addr()))
	resp, _ := get(t, e.client(), "http://"+e.addr+"/")
	if resp.StatusCode != 504 {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
}

// rawExchange writes raw onto a new connection and reads one response.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string, *bufio.Reader, net.Conn) {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var req *http.Request
	if strings.HasPrefix(raw, "HEAD ") {
		req = &http.Request{Method: http.MethodHead}
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b), br, c
}

func expectEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("connection still open: read %q", b)
	}
}

func TestHTTP10AndMalformed(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // no Content-Length: chunked to the proxy
		io.WriteString(w, "streamed")
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))

	// HTTP/1.0 without keep-alive: close-delimited body, then close.
	resp, body, br, _ := rawExchange(t, e.addr, "GET / HTTP/1.0\r\n\r\n")
	if resp.StatusCode != 200 || body != "streamed" || !resp.Close {
		t.Fatalf("1.0: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	expectEOF(t, br)

	// HTTP/1.0 keep-alive with a known length stays open.
	resp, body, br, c := rawExchange(t, e.addr, "GET /direct HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp.StatusCode != 418 || body != "teapot" || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("1.0 keep-alive: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	io.WriteString(c, "GET /direct HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 418 {
		t.Fatalf("second 1.0 request: %v %v", resp, err)
	}
	resp.Body.Close()

	// Malformed: 400 and close.
	resp, _, br, _ = rawExchange(t, e.addr, "THIS IS NOT HTTP\r\n\r\n")
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("malformed: %d close=%v", resp.StatusCode, resp.Close)
	}
	expectEOF(t, br)

	// HEAD: headers only, connection kept.
	resp, body, _, _ = rawExchange(t, e.addr, "HEAD /direct HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 418 || body != "" || resp.Close || resp.ContentLength != 6 {
		t.Fatalf("HEAD: %d %q close=%v length=%d", resp.StatusCode, body, resp.Close, resp.ContentLength)
	}
}

func TestHTTPPipelinedRequests(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/one", "/two", "/three"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}

func TestHTTPExpectContinue(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s expect=%q", b, r.Header.Get("Expect"))
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue first, got %q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != `hello expect=""` {
		t.Fatalf("body %q", b)
	}
}

func TestNewHTTPUnknownCluster(t *testing.T) {
	m := newManager(t, stats.New())
	if _, err := NewHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), m, stats.New(), quietLog()); err == nil {
		t.Fatal("route to an unknown cluster accepted")
	}
}

// An observer (the access log) reads the request's fields after its answer,
// and they are slices of the read buffer: the next request's bytes, moved
// to the buffer's front at the boundary, or another connection that takes
// the buffer from the pool, must not have overwritten them by then.
func TestObserversSeeTheirRequestAfterPipelinedBytes(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	reg := stats.New()
	m := newManager(t, reg, appCluster(be.addr()))
	var mu sync.Mutex
	var seen []string
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), m, reg, quietLog(),
		WithRequestObserver(func(info *RequestInfo) {
			mu.Lock()
			tag := ""
			for _, h := range info.Request.Headers {
				if string(h.Name) == "X-Tag" {
					tag = string(h.Value)
				}
			}
			seen = append(seen, string(info.Request.Path)+" "+tag)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /first-request HTTP/1.1\r\nHost: a\r\nX-Tag: one\r\n\r\n"+
		"GET /2 HTTP/1.1\r\nHost: a\r\nX-Tag: two-two-two-two\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: a\r\nX-Tag: 3\r\n\r\n")
	br := bufio.NewReader(c)
	for range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	want := []string{"/first-request one", "/2 two-two-two-two", "/3 3"}
	waitFor(t, "three requests observed", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Fatalf("observers saw %q, want %q", seen, want)
	}
}

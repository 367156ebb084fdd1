package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

// recorded is what a recording backend saw of one request.
type recorded struct {
	method, uri, host string
	header            http.Header
	body              string
}

// recordingBackend answers every request with status, after recording it.
func recordingBackend(t *testing.T, status int, respHeaders ...string) (*backend, <-chan recorded) {
	t.Helper()
	seen := make(chan recorded, 64)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- recorded{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(b)}
		for i := 0; i+1 < len(respHeaders); i += 2 {
			w.Header().Add(respHeaders[i], respHeaders[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, "from backend")
	})
	return be, seen
}

func routeTo(action *config.RouteAction, prefix string) *config.Router {
	return &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: prefix}, Route: action},
	}}}}
}

// Rewrites and header operations, seen by the backend and the client.
func TestRewritesAndHeaderOpsThroughTheEngine(t *testing.T) {
	be, seen := recordingBackend(t, 200, "Server", "backend/1", "X-Backend", "b", "Set-Cookie", "a=1", "Set-Cookie", "b=2")
	f := false
	add := func(k, v string, appendTo *bool) config.HeaderValueOption {
		return config.HeaderValueOption{Header: &config.HeaderValue{Key: k, Value: v}, Append: appendTo}
	}
	router := &config.Router{
		RequestHeadersToAdd:  []config.HeaderValueOption{add("X-Table", "t", nil)},
		ResponseHeadersToAdd: []config.HeaderValueOption{add("X-Proxy", "mosnlite", &f)},
		VirtualHosts: []config.VirtualHost{{Domains: []string{"*"},
			RequestHeadersToRemove: []string{"X-Internal"},
			Routers: []config.Route{{
				Match: config.RouteMatch{Prefix: "/api/"},
				Route: &config.RouteAction{ClusterName: "app", PrefixRewrite: "/v2/", HostRewrite: "internal.svc",
					RequestHeadersToAdd:     []config.HeaderValueOption{add("X-Env", "prod", &f), add("X-Tag", "route", nil), add("X-Client", "%downstream_remote_address%", &f)},
					ResponseHeadersToRemove: []string{"Server", "Set-Cookie"},
					ResponseHeadersToAdd:    []config.HeaderValueOption{add("X-Backend", "proxy", nil)}},
			}}}},
	}
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	c := dial(t, e.addr)
	fmt.Fprintf(c, "POST /api/users?id=7 HTTP/1.1\r\nHost: public.example\r\nX-Env: dev\r\nX-Tag: client\r\nX-Internal: secret\r\nContent-Length: 3\r\n\r\nabc")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	r := <-seen
	if r.uri != "/v2/users?id=7" || r.host != "internal.svc" || r.body != "abc" || r.method != "POST" {
		t.Fatalf("backend saw %s %s Host %s body %q", r.method, r.uri, r.host, r.body)
	}
	for k, want := range map[string]string{"X-Env": "prod", "X-Tag": "client,route", "X-Table": "t", "X-Internal": "",
		"X-Mosn-Original-Path": "/api/users", "X-Client": c.LocalAddr().String()} {
		if got := strings.Join(r.header.Values(k), "|"); got != want {
			t.Errorf("backend saw %s %q, want %q", k, got, want)
		}
	}
	for k, want := range map[string]string{"Server": "", "Set-Cookie": "", "X-Backend": "b,proxy", "X-Proxy": "mosnlite"} {
		if got := strings.Join(resp.Header.Values(k), "|"); got != want {
			t.Errorf("client got %s %q, want %q", k, got, want)
		}
	}
}

// A redirect route answers with its code and Location, and nothing goes upstream.
func TestRedirectRoute(t *testing.T) {
	be, seen := recordingBackend(t, 200)
	router := &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/old"}, Redirect: &config.RedirectAction{ResponseCode: 308, PathRedirect: "/new", SchemeRedirect: "https"}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app"}},
	}}}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	c := e.client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := get(t, c, "http://"+e.addr+"/old/page?x=1")
	_, port, _ := net.SplitHostPort(e.addr)
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://127.0.0.1:"+port+"/new?x=1" {
		t.Fatalf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	select {
	case r := <-seen:
		t.Fatalf("a redirect reached the backend: %+v", r)
	default:
	}
}

// observed collects the request records of a proxy.
func observed(p *httpProxy) <-chan RequestInfo {
	ch := make(chan RequestInfo, 64)
	p.observers = append(p.observers, func(info *RequestInfo) {
		cp := *info
		cp.Request, cp.resp = nil, nil
		ch <- cp
	})
	return ch
}

// A 5xx is retried on the other host; the budget and num_retries bound it.
func TestRetryOn5xxGoesToAnotherHost(t *testing.T) {
	var bad, good atomic.Int32
	failing := startBackend(t, func(w http.ResponseWriter, r *http.Request) { bad.Add(1); w.WriteHeader(503) })
	healthy := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		good.Add(1)
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "ok "+string(b))
	})
	router := routeTo(&config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 2}}, "/")
	var infos <-chan RequestInfo
	e := startTunedHTTP(t, func(p *httpProxy) { infos = observed(p) }, config.HTTPProxyConfig{}, router,
		config.Cluster{Name: "app", LBType: config.LBRoundRobin, Hosts: []config.Host{{Address: failing.addr()}, {Address: healthy.addr()}}})
	c := e.client()
	for i := range 4 {
		resp, err := c.Post("http://"+e.addr+"/", "text/plain", strings.NewReader(fmt.Sprint("body", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != fmt.Sprint("ok body", i) {
			t.Fatalf("request %d: %d %q, want the healthy host's answer with the body replayed", i, resp.StatusCode, b)
		}
	}
	// Round robin: the failing host first every other request, retried once each.
	if bad.Load() != 2 || good.Load() != 4 {
		t.Fatalf("failing host got %d, healthy %d; want 2 and 4", bad.Load(), good.Load())
	}
	retried := 0
	for range 4 {
		info := <-infos
		retried += info.Retries
		if info.Status != 200 || info.Upstream.Address() != healthy.addr() {
			t.Fatalf("info %+v", info)
		}
	}
	if retried != 2 {
		t.Fatalf("records say %d retries, want 2", retried)
	}
	if n := e.reg.Counter("cluster.upstream_rq_retry_total", "", "cluster", "app").Value(); n != 2 {
		t.Fatalf("retry_total = %v, want 2", n)
	}
}

// num_retries bounds the retries: with every host failing the last 5xx
// goes to the client as the upstream wrote it; without retry_on nothing is
// retried.
func TestRetriesBoundedAndLastAnswerForwarded(t *testing.T) {
	var hits atomic.Int32
	failing := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("X-Attempt", fmt.Sprint(hits.Load()))
		w.WriteHeader(500)
		io.WriteString(w, "broken")
	})
	router := &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/off"}, Route: &config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{NumRetries: 3}}},
		{Match: config.RouteMatch{Prefix: "/codes"}, Route: &config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{RetryOn: true, StatusCodes: []int{503}}}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 2}}},
	}}}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(failing.addr()))
	c := e.client()
	resp, body := get(t, c, "http://"+e.addr+"/")
	if resp.StatusCode != 500 || body != "broken" || resp.Header.Get("X-Attempt") != "3" || hits.Load() != 3 {
		t.Fatalf("%d %q attempt %s, hits %d: want the third try's 500 (1 + 2 retries)", resp.StatusCode, body, resp.Header.Get("X-Attempt"), hits.Load())
	}
	hits.Store(0)
	if resp, _ := get(t, c, "http://"+e.addr+"/off"); resp.StatusCode != 500 || hits.Load() != 1 {
		t.Fatalf("retry_on false: %d after %d tries, want one", resp.StatusCode, hits.Load())
	}
	hits.Store(0)
	if resp, _ := get(t, c, "http://"+e.addr+"/codes"); resp.StatusCode != 500 || hits.Load() != 1 {
		t.Fatalf("status_codes [503] and a 500: %d after %d tries, want one", resp.StatusCode, hits.Load())
	}
}

// A body that streamed up (not whole with the head) is never sent twice.
func TestNoRetryOfAStreamedBody(t *testing.T) {
	var hits atomic.Int32
	failing := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(503)
	})
	router := routeTo(&config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 3}}, "/")
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(failing.addr()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
	time.Sleep(50 * time.Millisecond) // the head goes up alone: the rest must stream
	io.WriteString(c, "56789")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || hits.Load() != 1 {
		t.Fatalf("%d after %d tries, want the 503 of the only try", resp.StatusCode, hits.Load())
	}
}

// A connection reset before the answer and a per-try timeout are retried;
// the route's timeout is not.
func TestRetryOnResetAndPerTryTimeout(t *testing.T) {
	var n atomic.Int32
	flaky := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1: // reset: hijack and close without an answer
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case 2: // slower than the per-try timeout
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "late")
		default:
			io.WriteString(w, "third time")
		}
	})
	router := routeTo(&config.RouteAction{ClusterName: "app", Timeout: config.Duration{Duration: 10 * time.Second},
		RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 3, RetryTimeout: config.Duration{Duration: 100 * time.Millisecond}}}, "/")
	var infos <-chan RequestInfo
	e := startTunedHTTP(t, func(p *httpProxy) { infos = observed(p) }, config.HTTPProxyConfig{}, router, appCluster(flaky.addr()))
	resp, body := get(t, e.client(), "http://"+e.addr+"/")
	if resp.StatusCode != 200 || body != "third time" {
		t.Fatalf("%d %q, want the third try's answer", resp.StatusCode, body)
	}
	if info := <-infos; info.Retries != 2 {
		t.Fatalf("retries %d, want 2 (a reset, a per-try timeout)", info.Retries)
	}
	// The route's own timeout ends it: 504, no retry.
	n.Store(1) // the next try sleeps
	router2 := routeTo(&config.RouteAction{ClusterName: "app", Timeout: config.Duration{Duration: 100 * time.Millisecond},
		RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 3}}, "/")
	e2 := startHTTP(t, config.HTTPProxyConfig{}, router2, appCluster(flaky.addr()))
	if resp, _ := get(t, e2.client(), "http://"+e2.addr+"/"); resp.StatusCode != 504 {
		t.Fatalf("past the route's timeout: %d, want 504", resp.StatusCode)
	}
	if got := n.Load(); got != 2 {
		t.Fatalf("%d tries in all, want the one past the route timeout not retried", got)
	}
}

// The retry budget keeps retries from multiplying the load: with
// max_retries 1, of many requests failing at once only one is retried.
func TestRetryBudgetBoundsConcurrentRetries(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	failing := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 8 {
			<-release // the first wave waits, so that all fail at once
		}
		w.WriteHeader(503)
	})
	router := routeTo(&config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 5}}, "/")
	cl := appCluster(failing.addr())
	cl.CircuitBreakers = []config.Thresholds{{MaxRetries: 1}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router, cl)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			resp, err := c.Get("http://" + e.addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 {
				t.Errorf("status %d, want 503", resp.StatusCode)
			}
		}()
	}
	waitFor(t, "8 requests at the backend", func() bool { return hits.Load() == 8 })
	close(release)
	wg.Wait()
	// One request holds the budget's only retry and uses its 5; the others get none.
	if got := hits.Load(); got != 8+5 {
		t.Fatalf("backend hits %d, want 13 (8 tries, 5 retries of one request)", got)
	}
	if n := e.reg.Counter("cluster.upstream_rq_retry_overflow_total", "", "cluster", "app").Value(); n != 7 {
		t.Fatalf("retry overflows %v, want 7", n)
	}
}

// Circuit breakers: over max_requests, and over max_connections with no
// room to wait, a request gets 503 flagged UO; the overflow is counted.
func TestCircuitBreakers503(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
		io.WriteString(w, "done")
	})
	for _, tc := range []struct {
		name    string
		th      config.Thresholds
		counter string
	}{
		{"max_requests", config.Thresholds{MaxRequests: 2}, "cluster.upstream_rq_overflow_total"},
		{"max_connections", config.Thresholds{MaxConnections: 2}, "cluster.upstream_rq_pending_overflow_total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arrived.Store(0)
			release = make(chan struct{})
			cl := appCluster(slow.addr())
			cl.CircuitBreakers = []config.Thresholds{tc.th}
			var infos <-chan RequestInfo
			e := startTunedHTTP(t, func(p *httpProxy) { infos = observed(p) }, config.HTTPProxyConfig{}, singleRoute(0), cl)
			codes := make(chan int, 2)
			for range 2 {
				go func() {
					resp, err := e.client().Get("http://" + e.addr + "/")
					if err != nil {
						t.Error(err)
						codes <- 0
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					codes <- resp.StatusCode
				}()
			}
			waitFor(t, "2 requests in flight", func() bool { return arrived.Load() == 2 })
			resp, body := get(t, e.client(), "http://"+e.addr+"/")
			if resp.StatusCode != 503 {
				t.Fatalf("third request: %d %q, want 503", resp.StatusCode, body)
			}
			if info := <-infos; info.Flags&FlagUpstreamOverflow == 0 || info.Status != 503 {
				t.Fatalf("record of the refused request: %+v", info)
			}
			if n := e.reg.Counter(tc.counter, "", "cluster", "app").Value(); n != 1 {
				t.Fatalf("%s = %v, want 1", tc.counter, n)
			}
			close(release)
			for range 2 {
				if code := <-codes; code != 200 {
					t.Fatalf("a request within the limit got %d", code)
				}
			}
		})
	}
}

// With max_pending_requests, a request over max_connections waits for a
// connection and is served on it.
func TestPendingRequestServedWhenAConnectionFrees(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 1 {
			<-release
		}
		io.WriteString(w, "done")
	})
	cl := appCluster(slow.addr())
	cl.CircuitBreakers = []config.Thresholds{{MaxConnections: 1, MaxPendingRequests: 1}}
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), cl)
	first := make(chan int, 1)
	go func() {
		resp, err := e.client().Get("http://" + e.addr + "/")
		if err != nil {
			first <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	waitFor(t, "the first request at the backend", func() bool { return arrived.Load() == 1 })
	second := make(chan int, 1)
	go func() {
		resp, err := e.client().Get("http://" + e.addr + "/")
		if err != nil {
			second <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		second <- resp.StatusCode
	}()
	waitFor(t, "the second request to wait", func() bool {
		return e.reg.Counter("cluster.upstream_cx_overflow_total", "", "cluster", "app").Value() == 1
	})
	close(release)
	if a, b := <-first, <-second; a != 200 || b != 200 {
		t.Fatalf("statuses %d %d, want both served", a, b)
	}
	if n := slow.conns.Load(); n != 1 {
		t.Fatalf("backend connections %d, want 1 (max_connections)", n)
	}
}

// Unix socket hosts go through the pool like TCP ones.
func TestUnixHostThroughThePool(t *testing.T) {
	path := t.TempDir() + "/be.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "unix "+r.URL.Path) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), config.Cluster{Name: "app", Hosts: []config.Host{{Address: path, Network: config.NetworkUnix}}})
	c := e.client()
	for i := range 3 {
		if resp, body := get(t, c, fmt.Sprintf("http://%s/%d", e.addr, i)); resp.StatusCode != 200 || body != fmt.Sprintf("unix /%d", i) {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if conns.Load() != 1 {
		t.Fatalf("unix backend connections %d, want 1 (pooled)", conns.Load())
	}
}

// max_request_per_conn: after N requests the upstream connection is retired.
func TestMaxRequestPerConnUpstream(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cl := appCluster(be.addr())
	cl.MaxRequestPerConn = 2
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), cl)
	c := e.client()
	for range 5 {
		get(t, c, "http://"+e.addr+"/")
	}
	if n := be.conns.Load(); n != 3 {
		t.Fatalf("backend connections %d for 5 requests at 2 per connection, want 3", n)
	}
}

// conn_buffer_limit_bytes bounds a single read of a response body.
func TestConnBufferLimitBoundsReads(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	cl := appCluster(be.addr())
	cl.ConnBufferLimitBytes = 1024
	var x *exchange
	e := startTunedHTTP(t, nil, config.HTTPProxyConfig{}, singleRoute(0), cl)
	_ = x
	if resp, body := get(t, e.client(), "http://"+e.addr+"/"); resp.StatusCode != 200 || body != big {
		t.Fatalf("%d, %d bytes", resp.StatusCode, len(body))
	}
	ex := &exchange{upIn: upIn{upBuf: &buffer{b: make([]byte, upstreamBufSize)}}, bufLimit: 1024}
	if ex.readRoom() != 1024 {
		t.Fatalf("read room %d under a 1024-byte limit", ex.readRoom())
	}
	ex.bufLimit = 0
	if ex.readRoom() != upstreamBufSize {
		t.Fatalf("read room %d without a limit", ex.readRoom())
	}
	_ = stats.New
}

// auto_host_rewrite_header takes the upstream Host from a request field
// when the request has it; host_rewrite wins over it.
func TestAutoHostRewriteHeader(t *testing.T) {
	be, seen := recordingBackend(t, 200)
	router := &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/fixed"}, Route: &config.RouteAction{ClusterName: "app", HostRewrite: "fixed.svc", AutoHostRewriteHeader: "X-Host"}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app", AutoHostRewriteHeader: "X-Host"}},
	}}}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	for _, tc := range []struct{ req, host string }{
		{"GET /a HTTP/1.1\r\nHost: public\r\nX-Host: chosen.svc\r\n\r\n", "chosen.svc"},
		{"GET /a HTTP/1.1\r\nHost: public\r\n\r\n", "public"},
		{"GET /fixed HTTP/1.1\r\nHost: public\r\nX-Host: chosen.svc\r\n\r\n", "fixed.svc"},
	} {
		io.WriteString(c, tc.req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if r := <-seen; r.host != tc.host {
			t.Errorf("%q: backend saw Host %q, want %q", tc.req, r.host, tc.host)
		}
	}
}

// Routes match the normalised path, as MOSN's (percent-decoded, dot
// segments resolved, slashes collapsed): a prefix guarding /admin catches
// every spelling of it. A path not rewritten goes upstream as sent; a
// rewritten one is the normalised path rewritten; one climbing above the
// root is a 400.
func TestRoutingOnTheNormalisedPath(t *testing.T) {
	be, seen := recordingBackend(t, 200)
	router := adminGuardRouter()
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	for _, tc := range []struct {
		path     string
		status   int
		upstream string
	}{
		{"/admin/x", 403, ""},
		{"/%61dmin/x", 403, ""},
		{"/public/../admin/x", 403, ""},
		{"//admin/x", 403, ""},
		{"/a/./%2e%2e/admin", 403, ""},
		{"/pub//lic/./x?q=1", 200, "/pub//lic/./x?q=1"},
		{"/%6fld/a%20b/../c?q", 200, "/new/c?q"},
		{"/old/%C3%A9%3F", 200, "/new/%C3%A9%3F"},
		{"/old/%20x%23", 200, "/new/%20x%23"},
		{"/old/a%2Fb", 200, "/new/a%2Fb"},
		{"/../etc/passwd", 400, ""},
	} {
		c := dial(t, e.addr)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", tc.path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		c.Close()
		got := ""
		if resp.StatusCode == 200 {
			got = (<-seen).uri
		}
		if resp.StatusCode != tc.status || got != tc.upstream {
			t.Errorf("%s: %d, upstream saw %q; want %d, %q", tc.path, resp.StatusCode, got, tc.status, tc.upstream)
		}
	}
}

// The route's timeout starts once the request went upstream whole, as
// MOSN's (onUpstreamRequestSent): an upload longer than the timeout is not
// the upstream's delay; an upstream slower than it after the upload is a
// 504.
func TestRouteTimeoutStartsAfterTheUpload(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		fmt.Fprintf(w, "got %d", len(b))
	})
	const timeout = 300 * time.Millisecond
	router := routeTo(&config.RouteAction{ClusterName: "app", Timeout: config.Duration{Duration: timeout}}, "/")
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{{"/", 200, "got 4"}, {"/slow", 504, ""}} {
		c := dial(t, e.addr)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", tc.path)
		for range 4 { // an upload of 4×150 ms, twice the timeout
			time.Sleep(timeout / 2)
			io.WriteString(c, "x")
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || (tc.body != "" && string(b) != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
		c.Close()
	}
}

// Set-Cookie fields are never folded into one (RFC 9110 5.3): the
// upstream's stay separate, an append adds a field of its own, a set
// replaces them all.
func TestSetCookieNeverFolded(t *testing.T) {
	be, seen := recordingBackend(t, 200, "Set-Cookie", "a=1", "Set-Cookie", "b=2")
	no := false
	for _, tc := range []struct {
		op   config.HeaderValueOption
		want string
	}{
		{config.HeaderValueOption{Header: &config.HeaderValue{Key: "Set-Cookie", Value: "c=3"}}, "a=1|b=2|c=3"},
		{config.HeaderValueOption{Header: &config.HeaderValue{Key: "set-cookie", Value: "c=3"}, Append: &no}, "c=3"},
	} {
		router := routeTo(&config.RouteAction{ClusterName: "app", ResponseHeadersToAdd: []config.HeaderValueOption{tc.op}}, "/")
		e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
		resp, _ := get(t, e.client(), "http://"+e.addr+"/")
		<-seen
		if got := strings.Join(resp.Header.Values("Set-Cookie"), "|"); got != tc.want {
			t.Errorf("append %v: Set-Cookie fields %q, want %q", tc.op.Append == nil, got, tc.want)
		}
	}
	router := routeTo(&config.RouteAction{ClusterName: "app", ResponseHeadersToRemove: []string{"Set-Cookie"}}, "/")
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	resp, _ := get(t, e.client(), "http://"+e.addr+"/")
	<-seen
	if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("removed Set-Cookie still sent: %q", got)
	}
}

// MOSN retries a connection failure on every route, retry_policy or not:
// a single-host cluster whose connects fail is tried 1 + 3 times.
func TestConnectFailureRetriedWithoutRetryPolicy(t *testing.T) {
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(closedAddr(t)))
	resp, _ := get(t, e.client(), "http://"+e.addr+"/")
	n := e.reg.Counter("cluster.upstream_cx_connect_fail_total", "", "cluster", "app").Value()
	if resp.StatusCode != 502 || n != 1+defaultRetries {
		t.Fatalf("status %d after %v connect attempts, want 502 after %d", resp.StatusCode, n, 1+defaultRetries)
	}
	if r := e.reg.Counter("cluster.upstream_rq_retry_total", "", "cluster", "app").Value(); r != 1 {
		t.Fatalf("retry_total %v, want 1 (the request's place in the retry budget)", r)
	}
}

// adminGuardRouter refuses /admin (403), rewrites /old/ to /new/ and sends
// the rest to cluster "app".
func adminGuardRouter() *config.Router {
	return &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/admin"}, DirectResponse: &config.DirectResponse{Status: 403, Body: "no"}},
		{Match: config.RouteMatch{Prefix: "/old/"}, Route: &config.RouteAction{ClusterName: "app", PrefixRewrite: "/new/"}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app"}},
	}}}}
}

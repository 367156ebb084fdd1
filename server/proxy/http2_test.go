package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/mosnlite/mosnlite/config"
)

// h2cClient is x/net's HTTP/2 client over plain TCP (prior knowledge).
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP:          true,
		DisableCompression: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, Timeout: 20 * time.Second}
}

// startH2CBackend serves h over HTTP/2 with prior knowledge (x/net's
// server), counting connections.
func startH2CBackend(t *testing.T, h http.Handler) (addr string, conns *atomic.Int32) {
	t.Helper()
	l := listen(t)
	conns = &atomic.Int32{}
	srv := &http2.Server{}
	var mu sync.Mutex
	var live []net.Conn
	acceptEach(l, func(nc net.Conn) {
		conns.Add(1)
		mu.Lock()
		live = append(live, nc)
		mu.Unlock()
		go srv.ServeConn(nc, &http2.ServeConnOpts{Handler: h})
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range live {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String(), conns
}

// echoH handles every request: the body echoed, its sha256 as a trailer,
// what the request looked like in headers.
func echoH(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Trailer", "X-Sum")
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Path", r.URL.RequestURI())
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Te", r.Header.Get("Te"))
	w.Header().Set("X-Xff", r.Header.Get("X-Forwarded-For"))
	w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Client-Sum"))
	w.WriteHeader(200)
	_, _ = w.Write(body)
	w.Header().Set("X-Sum", fmt.Sprintf("%x", sha256.Sum256(body)))
}

// trailerBody is a request body whose trailer is set once it is read.
type trailerBody struct {
	r   io.Reader
	req *http.Request
	sum string
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Client-Sum", b.sum)
	}
	return n, err
}

// h2Roundtrips checks an h2c client through the proxy: bodies of several
// sizes both ways, trailers both ways, the routed path and host, and
// whether the backend saw HTTP/2 (wantProto).
func h2Roundtrips(t *testing.T, e *httpEnv, wantProto string) {
	t.Helper()
	cl := h2cClient()
	for _, n := range []int{0, 1, 70000, 1 << 20} {
		body := payload(n)
		sum := fmt.Sprintf("%x", sha256.Sum256(body))
		req, _ := http.NewRequest("POST", "http://"+e.addr+"/echo?n=1", nil)
		req.Trailer = http.Header{"X-Client-Sum": nil}
		req.Body = io.NopCloser(&trailerBody{r: bytes.NewReader(body), req: req, sum: sum})
		req.ContentLength = -1
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: echo of %d bytes, err %v", n, len(got), err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("%d bytes: %s %d", n, resp.Proto, resp.StatusCode)
		}
		if h := resp.Header; h.Get("X-Proto") != wantProto || h.Get("X-Path") != "/echo?n=1" || h.Get("X-Host") != e.addr ||
			h.Get("X-Xff") != "127.0.0.1" || h.Get("X-Req-Trailer") != sum {
			t.Fatalf("%d bytes: the backend saw %v", n, h)
		}
		if resp.Trailer.Get("X-Sum") != sum {
			t.Fatalf("%d bytes: trailer %v, want X-Sum %s", n, resp.Trailer, sum)
		}
	}
	// Local answers: a direct response and no route.
	resp, body := get(t, cl, "http://"+e.addr+"/direct")
	if resp.StatusCode != 418 || body != "teapot" || resp.ProtoMajor != 2 {
		t.Fatalf("direct response: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
}

func TestHTTP2DownstreamToHTTP1Upstream(t *testing.T) {
	be := startBackend(t, echoH)
	var infos []RequestInfo
	var mu sync.Mutex
	e := startTunedHTTP(t, func(p *httpProxy) {
		p.observers = append(p.observers, func(info *RequestInfo) {
			mu.Lock()
			infos = append(infos, *info)
			mu.Unlock()
		})
	}, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1}, singleRoute(0), appCluster(be.addr()))
	h2Roundtrips(t, e, "HTTP/1.1")
	if n := e.requests("app", "2xx"); n != 4 {
		t.Errorf("rq_total{app,2xx} = %v, want 4", n)
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("upstream HTTP/1 connections = %d, want 1 (pooled)", n)
	}
	if n := e.downstreamConns(); n != 1 {
		t.Errorf("downstream connections = %v, want 1", n)
	}
	// A record is made once the stream ended, after the client has its
	// answer.
	waitFor(t, "5 request records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(infos) == 5
	})
	mu.Lock()
	defer mu.Unlock()
	last := infos[3]
	if last.Status != 200 || last.Cluster != "app" || last.BytesReceived != 1<<20 || last.BytesSent != 1<<20 ||
		string(last.Request.Path) != "/echo?n=1" || last.Upstream == nil {
		t.Errorf("request record %+v", last)
	}
}

func TestHTTP2DownstreamToHTTP2Upstream(t *testing.T) {
	addr, conns := startH2CBackend(t, http.HandlerFunc(echoH))
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2}, singleRoute(0), appCluster(addr))
	h2Roundtrips(t, e, "HTTP/2.0")
	// Concurrent streams share the one upstream connection.
	cl := h2cClient()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Post("http://"+e.addr+"/x", "text/plain", strings.NewReader("hello"))
			if err != nil {
				failed.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hello" {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of 32 concurrent requests failed", failed.Load())
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream HTTP/2 connections = %d, want 1 (multiplexed)", n)
	}
}

func TestHTTP2AutoDetectsThePreface(t *testing.T) {
	be := startBackend(t, echoH)
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolAuto, UpstreamProtocol: config.ProtocolHTTP1}, singleRoute(0), appCluster(be.addr()))
	h2Roundtrips(t, e, "HTTP/1.1")
	// An HTTP/1.1 client on the same listener.
	resp, body := get(t, e.client(), "http://"+e.addr+"/direct")
	if resp.StatusCode != 418 || body != "teapot" || resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1 on Auto: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	// A request whose first bytes arrive one by one ("P", "O", …) is still
	// HTTP/1.
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, b := range []byte("POST /direct HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") {
		if _, err := nc.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line := make([]byte, 12)
	if _, err := io.ReadFull(nc, line); err != nil || string(line) != "HTTP/1.1 418" {
		t.Fatalf("byte-by-byte HTTP/1 request on Auto: %q %v", line, err)
	}
}

func TestHTTP2LimitsAndLocalAnswers(t *testing.T) {
	be := startBackend(t, echoH)
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1,
		MaxRequestHeadersCount: 8, MaxRequestBodyBytes: 1000}, singleRoute(0), appCluster(be.addr()))
	cl := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+e.addr+"/", nil)
	for i := range 10 {
		req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	resp, err := cl.Do(req)
	if err != nil || resp.StatusCode != 431 {
		t.Fatalf("too many header fields: %v %v, want 431", resp, err)
	}
	resp.Body.Close()
	resp, err = cl.Post("http://"+e.addr+"/", "text/plain", bytes.NewReader(payload(2000)))
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("body over the limit with a length: %v %v, want 413", resp, err)
	}
	resp.Body.Close()
	// Without a length: found out while streaming.
	resp, err = cl.Post("http://"+e.addr+"/", "text/plain", io.MultiReader(bytes.NewReader(payload(2000))))
	if err == nil {
		resp.Body.Close()
	}
	if err == nil && resp.StatusCode != 413 {
		t.Fatalf("streamed body over the limit: %d, want 413 or a reset", resp.StatusCode)
	}
	// The connection still serves.
	resp, body := get(t, cl, "http://"+e.addr+"/direct")
	if resp.StatusCode != 418 || body != "teapot" {
		t.Fatalf("after the limits: %d %q", resp.StatusCode, body)
	}
	// A closed upstream is a 502; nothing routed a 404.
	e2 := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2}, &config.Router{VirtualHosts: []config.VirtualHost{{
		Domains: []string{"known"}, Routers: []config.Route{{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app"}}}}}},
		appCluster(closedAddr(t)))
	resp, _ = get(t, cl, "http://"+e2.addr+"/")
	if resp.StatusCode != 404 {
		t.Fatalf("no route: %d, want 404", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", "http://"+e2.addr+"/", nil)
	req.Host = "known"
	resp, err = cl.Do(req)
	if err != nil || resp.StatusCode != 502 {
		t.Fatalf("closed upstream: %v %v, want 502", resp, err)
	}
	resp.Body.Close()
}

// TestHTTP2DrainSaysGoAway: at a drain the client's streams in flight end
// normally, and its next requests go out on a new connection; the old one
// closes once its streams are done.
func TestHTTP2DrainSaysGoAway(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done "+r.URL.Path)
	})
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1}, singleRoute(0), appCluster(be.addr()))
	cl := h2cClient()
	results := make(chan string, 3)
	for range 3 {
		go func() {
			resp, err := cl.Get("http://" + e.addr + "/slow")
			if err != nil {
				results <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- string(b)
		}()
	}
	for range 3 {
		<-entered
	}
	if n := e.p.Active(); n != 1 {
		t.Fatalf("%d downstream connections, want 1", n)
	}
	e.p.Drain()
	// The drained connection takes no new stream: this one goes out on a
	// second connection (the tracker, draining, drains it too at once, so
	// it is answered and closed).
	// A request sent before the client read the first GOAWAY is still
	// served on the old connection; once it has, they go to a new one.
	waitFor(t, "a request on a new connection", func() bool {
		resp, body := get(t, cl, "http://"+e.addr+"/fast")
		if resp.StatusCode != 200 || body != "done /fast" {
			t.Fatalf("request after the drain: %d %q", resp.StatusCode, body)
		}
		return e.downstreamConns() == 2
	})
	close(release)
	for range 3 {
		if r := <-results; r != "done /slow" {
			t.Fatalf("stream in flight at the drain: %q", r)
		}
	}
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("connections left after the drain: %d (%v)", e.p.Active(), err)
	}
}

// HTTP/2 requests route on the normalised path too: a guard of /admin is
// not bypassed by another spelling of it.
func TestHTTP2RoutesOnTheNormalisedPath(t *testing.T) {
	be, seen := recordingBackend(t, 200)
	router := adminGuardRouter()
	e := startHTTP(t, config.HTTPProxyConfig{DownstreamProtocol: config.ProtocolHTTP2, UpstreamProtocol: config.ProtocolHTTP1}, router, appCluster(be.addr()))
	cl := h2cClient()
	for _, tc := range []struct {
		path     string
		status   int
		upstream string
	}{
		{"/%61dmin/x", 403, ""},
		{"/public/../admin/x", 403, ""},
		{"/a//..//admin/x", 403, ""},
		{"/%6fld/a%20b", 200, "/new/a%20b"},
		{"/pub/./x", 200, "/pub/./x"},
		{"/../x", 400, ""},
	} {
		req, err := http.NewRequest("GET", "http://"+e.addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = tc.path
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got := ""
		if resp.StatusCode == 200 {
			got = (<-seen).uri
		}
		if resp.StatusCode != tc.status || got != tc.upstream {
			t.Errorf("%s: %d, upstream saw %q; want %d %q", tc.path, resp.StatusCode, got, tc.status, tc.upstream)
		}
	}
}

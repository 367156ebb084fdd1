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
)

// A cluster whose hosts fail in every way (resets, late answers, 503s,
// cut bodies, a refusing host), hammered under circuit breakers and retries
// with clients that give up mid-request: every place comes back.
func TestBreakersReturnToZeroUnderFailures(t *testing.T) {
	var n atomic.Int32
	flaky := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch n.Add(1) % 5 {
		case 0:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case 1:
			time.Sleep(150 * time.Millisecond)
			io.WriteString(w, "late")
		case 2:
			w.WriteHeader(503)
		case 3:
			conn, bw, _ := w.(http.Hijacker).Hijack()
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			bw.Flush()
			conn.Close()
		default:
			io.WriteString(w, "ok")
		}
	})
	router := routeTo(&config.RouteAction{ClusterName: "app", Timeout: config.Duration{Duration: time.Second},
		RetryPolicy: &config.RetryPolicy{RetryOn: true, NumRetries: 3, RetryTimeout: config.Duration{Duration: 50 * time.Millisecond}}}, "/")
	cl := appCluster(flaky.addr(), closedAddr(t))
	cl.CircuitBreakers = []config.Thresholds{{MaxConnections: 4, MaxPendingRequests: 4, MaxRequests: 6, MaxRetries: 2}}
	e := startHTTP(t, config.HTTPProxyConfig{}, router, cl)
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			c.Timeout = 3 * time.Second
			for i := range 25 {
				var resp *http.Response
				var err error
				if (g+i)%2 == 0 {
					resp, err = c.Post("http://"+e.addr+"/", "text/plain", strings.NewReader("body"))
				} else {
					resp, err = c.Get("http://" + e.addr + "/")
				}
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for range 20 { // clients that give up mid-request
		c := dial(t, e.addr)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		time.Sleep(10 * time.Millisecond)
		c.Close()
	}
	wg.Wait()
	app := e.m.Get("app")
	waitFor(t, "no request in flight after the hammer", func() bool { return app.Requests() == 0 && app.Pending() == 0 })
	for range 2 { // max_retries 2: both places free
		if !app.StartRetry() {
			t.Fatalf("StartRetry refused after the hammer: retry places leaked")
		}
	}
	app.EndRetry()
	app.EndRetry()
	if got := app.OpenConns(); got > 4 {
		t.Fatalf("open conns %d > max_connections 4", got)
	}
	n.Store(3) // the next answer is "ok"
	resp, body := get(t, e.client(), "http://"+e.addr+"/")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after the hammer: %d %q, want 200 ok (places leaked? open conns %d)", resp.StatusCode, body, app.OpenConns())
	}
}

// A chunked body that came whole with the head is sent again intact.
func TestRetryOfAChunkedBody(t *testing.T) {
	var n atomic.Int32
	bodies := make(chan string, 4)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		if n.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		fmt.Fprintf(w, "got %s", b)
	})
	router := routeTo(&config.RouteAction{ClusterName: "app", RetryPolicy: &config.RetryPolicy{RetryOn: true}}, "/")
	e := startHTTP(t, config.HTTPProxyConfig{}, router, appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "got hello world" {
		t.Fatalf("retry of a chunked body: %d %q", resp.StatusCode, b)
	}
	if a, b := <-bodies, <-bodies; a != "hello world" || b != "hello world" {
		t.Fatalf("backend bodies %q %q, want the whole body twice", a, b)
	}
}

// A client that goes away while its request waits for a slow upstream's
// answer: the upstream request is reset (MOSN resets the upstream stream
// when the downstream closes) and its max_requests place comes free long
// before the route's timeout.
func TestGoneClientFreesItsMaxRequestsPlace(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var arrived atomic.Int32
	upstreamGone := make(chan struct{})
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
				close(upstreamGone)
				return
			}
		}
		io.WriteString(w, "done")
	})
	cl := appCluster(slow.addr())
	cl.CircuitBreakers = []config.Thresholds{{MaxRequests: 1}}
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(30*time.Second), cl)
	a := dial(t, e.addr)
	io.WriteString(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "A at the backend", func() bool { return arrived.Load() == 1 })
	a.Close()
	select {
	case <-upstreamGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request of a gone client was not reset")
	}
	app := e.m.Get("app")
	waitFor(t, "A's max_requests place free", func() bool { return app.Requests() == 0 })
	resp, body := get(t, e.client(), "http://"+e.addr+"/")
	if resp.StatusCode != 200 || body != "done" {
		t.Fatalf("B: %d %q, want 200 done: the gone client A still holds max_requests", resp.StatusCode, body)
	}
}

// A request waiting for a connection (max_pending_requests) whose client
// goes away gives its place back: the next request waits in it and is
// served when the connection frees.
func TestGoneClientFreesItsPendingPlace(t *testing.T) {
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
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(30*time.Second), cl)
	app := e.m.Get("app")
	send := func() net.Conn {
		c := dial(t, e.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		return c
	}
	a := send()
	waitFor(t, "A at the backend", func() bool { return arrived.Load() == 1 })
	b := send()
	waitFor(t, "B waiting for the connection", func() bool { return app.Pending() == 1 })
	b.Close()
	waitFor(t, "B's pending place free", func() bool { return app.Pending() == 0 })
	c := send()
	waitFor(t, "C waiting in B's place", func() bool { return app.Pending() == 1 })
	close(release)
	for name, conn := range map[string]net.Conn{"A": a, "C": c} {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "done" {
			t.Fatalf("%s: %d %q, want 200 done", name, resp.StatusCode, body)
		}
	}
	if v := e.reg.Counter("cluster.upstream_rq_pending_overflow_total", "", "cluster", "app").Value(); v != 0 {
		t.Fatalf("pending overflows %v, want 0", v)
	}
}

// A request waiting for its answer whose client sends its next request
// (pipelining) is not taken for a gone client: both are answered in turn.
func TestPipelinedRequestWhileWaitingIsNotAClose(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(3 * clientWatchDelay)
		}
		io.WriteString(w, r.URL.Path)
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(2 * clientWatchDelay) // the watch is on
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/slow", "/next"} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("%s: %d %q", want, resp.StatusCode, body)
		}
	}
}

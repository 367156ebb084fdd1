package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

// The done hook sees each request's record at its end: what an access log
// or a histogram reads.
func TestRequestInfoAtTheEnd(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, strings.Repeat("r", 10))
		_ = body
	})
	infos := make(chan RequestInfo, 4)
	e := startTunedHTTP(t, func(p *httpProxy) {
		p.observers = append(p.observers, func(info *RequestInfo) {
			cp := *info
			cp.Request = nil // its slices are not ours after the call
			infos <- cp
		})
	}, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr(), closedAddr(t)))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("proxied request: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	info := <-infos
	if info.Status != 200 || info.Cluster != "app" || info.BytesReceived != 5 || info.BytesSent != 10 ||
		info.Upstream == nil || info.Upstream.Address() != be.addr() || info.Downstream != "127.0.0.1" ||
		info.Listener != "web" || info.Start.IsZero() || info.Duration <= 0 || info.UpstreamResponse <= 0 ||
		info.UpstreamResponse > info.Duration {
		t.Fatalf("info %+v", info)
	}
	// Round robin sends the next one to the dead host first: a connect
	// failure, then the live host.
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("retried request: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	info = <-infos
	if info.Attempts != 2 || info.Flags&FlagUpstreamConnectFail == 0 || info.Upstream.Address() != be.addr() {
		t.Fatalf("retry info %+v", info)
	}
	io.WriteString(c, "GET /direct HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 418 {
		t.Fatalf("direct: %v %v", resp, err)
	}
	if info = <-infos; info.Status != 418 || info.Flags&FlagLocalResponse == 0 || info.BytesSent != 6 || info.Upstream != nil {
		t.Fatalf("direct info %+v", info)
	}
}

// Without config, the limits are the documented defaults.
func TestHTTPLimitDefaults(t *testing.T) {
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(closedAddr(t)))
	if e.p.maxHeadBytes != 60<<10 || e.p.maxHeaders != 100 || e.p.headerTimeout != 10*time.Second || e.p.maxBodyBytes != 0 {
		t.Fatalf("limits: head %d, fields %d, header timeout %v, body %d", e.p.maxHeadBytes, e.p.maxHeaders, e.p.headerTimeout, e.p.maxBodyBytes)
	}
}

// An idle connection goes from its goroutine to the poller after the
// handoff, holding no buffer, and comes back with its next request, as
// many times as it goes idle.
func TestIdleConnParksAndWakes(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })
	e := startTunedHTTP(t, func(p *httpProxy) { p.handoff = 20 * time.Millisecond }, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
		expectAnswer(t, br, fmt.Sprintf("ok /%d", i), false)
		waitFor(t, "the connection to park", func() bool { return e.p.idle.idleCount() == 1 })
		var held *httpConn
		e.p.tracker.Range(func(cc conntrack.Conn, s conntrack.State) bool {
			held = cc.(*httpConn)
			return s == conntrack.Idle
		})
		e.p.idle.mu.Lock()
		in, raw := held.in, held.raw
		e.p.idle.mu.Unlock()
		if in != nil || raw != nil {
			t.Fatalf("a parked connection holds a buffer (%v) or its raw I/O helper (%v)", in != nil, raw != nil)
		}
	}
	// Pipelined requests that arrive at once while it is parked are all served.
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
	expectAnswer(t, br, "ok /a", false)
	expectAnswer(t, br, "ok /b", false)
}

// A parked connection still times out, drains and closes.
func TestParkedConnTimesOutDrainsAndCloses(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	e := startTunedHTTP(t, func(p *httpProxy) { p.handoff = 10 * time.Millisecond },
		config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: 300 * time.Millisecond}}, singleRoute(0), appCluster(be.addr()))
	conn := func() (*net.TCPConn, *bufio.Reader) {
		c := dial(t, e.addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		expectAnswer(t, br, "ok", false)
		return c, br
	}
	// Idle timeout, counted from when it became idle, not from the park.
	_, br := conn()
	start := time.Now()
	waitFor(t, "the connection to park", func() bool { return e.p.idle.idleCount() == 1 })
	expectEOF(t, br)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed %v after going idle, idle timeout 300ms", d)
	}
	waitFor(t, "the tracker to forget it", func() bool { return e.p.Active() == 0 })

	// CloseAll closes a parked connection that has no goroutine to do it.
	_, br = conn()
	waitFor(t, "the connection to park", func() bool { return e.p.idle.idleCount() == 1 })
	e.p.CloseAll()
	expectEOF(t, br)
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// rawClient is one keep-alive client connection, driven by hand.
type rawClient struct {
	c  *net.TCPConn
	br *bufio.Reader
}

func newRawClient(t *testing.T, addr string) *rawClient {
	c := dial(t, addr)
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

// get sends GET path and expects 200 with body, closing or not.
func (k *rawClient) get(t *testing.T, path, body string, wantClose bool) {
	t.Helper()
	fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path)
	expectAnswer(t, k.br, body, wantClose)
}

func TestParkedConnDrainsAndMoves(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	a := startTunedHTTP(t, func(p *httpProxy) { p.handoff = 10 * time.Millisecond }, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	b := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	clients := []*rawClient{newRawClient(t, a.addr), newRawClient(t, a.addr)}
	for _, k := range clients {
		k.get(t, "/", "ok", false)
	}
	waitFor(t, "both to park", func() bool { return a.p.idle.idleCount() == 2 })
	parks := make(chan *Parked, 2)
	a.p.Migrate(parkInto(parks))
	p1 := awaitParked(t, parks)
	held, err := b.p.Adopt(p1.Handover)
	if err != nil {
		t.Fatal(err)
	}
	p1.Moved()
	held.Start()
	awaitParked(t, parks).Resume() // this one stays, and drains
	closed := 0
	for _, k := range clients {
		fmt.Fprint(k.c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(k.br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the move: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.Close {
			closed++
		}
	}
	if closed != 1 {
		t.Fatalf("%d answers closed their connection, want 1 (the one that stayed drains)", closed)
	}
	if a.requests("app", "2xx")+b.requests("app", "2xx") != 4 || b.requests("app", "2xx") != 1 {
		t.Fatalf("requests old %v new %v", a.requests("app", "2xx"), b.requests("app", "2xx"))
	}
	waitFor(t, "the old proxy to let go of the moved one and close the drained one", func() bool { return a.p.Active() == 0 })
}

// Upstream connections are paired with a downstream one for an exchange
// and go back to the pool at once: sequential requests share one, and a
// pooled one the upstream closed is replaced for a request that can be
// sent again, checked first for one that cannot.
func TestUpstreamPoolReuseAndStaleConnections(t *testing.T) {
	var conns atomic.Int32
	var mu sync.Mutex
	var live []net.Conn
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Method) }))
	be.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
			mu.Lock()
			live = append(live, c)
			mu.Unlock()
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.Listener.Addr().String()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	roundTrip := func(method, want string) {
		t.Helper()
		body := ""
		if method == "POST" {
			body = "Content-Length: 2\r\n\r\nhi"
		} else {
			body = "\r\n"
		}
		fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: a\r\n%s", method, body)
		expectAnswer(t, br, want, false)
	}
	for range 3 {
		roundTrip("GET", "GET")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 sequential requests used %d upstream connections, want 1", n)
	}
	closeUpstream := func() {
		mu.Lock()
		for _, lc := range live {
			lc.Close()
		}
		live = nil
		mu.Unlock()
		waitFor(t, "the pooled connection to see the close", func() bool {
			h := e.m.Get("app").Hosts()[0]
			up := e.m.Get("app").Idle(h)
			if up == nil {
				return true
			}
			closed := peerClosed(up.Conn)
			e.m.Get("app").Put(up)
			return closed
		})
	}
	closeUpstream()
	roundTrip("GET", "GET") // replayed on a fresh connection
	closeUpstream()
	roundTrip("POST", "POST") // the closed one is seen before anything is sent
	if n := conns.Load(); n != 3 {
		t.Fatalf("upstream connections %d, want 3", n)
	}
}

// Bodies of unknown length stream through re-framed, with trailers, both ways.
func TestHTTPChunkedFramingAndTrailers(t *testing.T) {
	gotTrailer := make(chan string, 1)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		gotTrailer <- r.Trailer.Get("X-Req-Sum")
		w.Header().Set("Trailer", "X-Resp-Sum")
		w.WriteHeader(200)
		io.WriteString(w, "part1 ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("X-Resp-Sum", "99")
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n\r\n"+
		"3\r\nabc\r\n0\r\nX-Req-Sum: 42\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "part1 part2" || len(resp.TransferEncoding) != 1 || resp.Trailer.Get("X-Resp-Sum") != "99" {
		t.Fatalf("response %q te=%v trailer=%v", b, resp.TransferEncoding, resp.Trailer)
	}
	if tr := <-gotTrailer; tr != "42" {
		t.Fatalf("request trailer at the upstream: %q", tr)
	}
}

// An absolute-form target goes upstream in origin form, with the target's
// authority as Host; X-Forwarded-For gathers every earlier hop.
func TestHTTPAbsoluteFormAndForwardedChain(t *testing.T) {
	seen := make(chan string, 1)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Host + " " + r.RequestURI + " " + r.Header.Get("X-Forwarded-For")
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "GET http://Example.COM:81/p?q=1 HTTP/1.1\r\nHost: ignored\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "Example.COM:81 /p?q=1 1.1.1.1, 2.2.2.2, 127.0.0.1" {
		t.Fatalf("upstream saw %q", got)
	}
}

func TestMemReclaimAfterAWave(t *testing.T) {
	m := newMemReclaimer()
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	var pending []func()
	reclaimed := 0
	m.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m.after = func(_ time.Duration, f func()) { mu.Lock(); pending = append(pending, f); mu.Unlock() }
	m.reclaim = func() { reclaimed++ }
	fire := func() {
		mu.Lock()
		fs := pending
		pending = nil
		mu.Unlock()
		for _, f := range fs {
			f()
		}
	}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	for range reclaimBatch - 1 {
		m.left()
	}
	if len(pending) != 0 {
		t.Fatal("a check scheduled before a batch left")
	}
	m.left()
	if len(pending) != 1 {
		t.Fatalf("%d checks scheduled, want 1", len(pending))
	}
	fire() // the wave is not over: nothing gone for 0s
	if reclaimed != 0 || len(pending) != 1 {
		t.Fatalf("reclaimed %d with connections still leaving; %d checks", reclaimed, len(pending))
	}
	advance(reclaimQuiet)
	fire()
	if reclaimed != 1 {
		t.Fatalf("reclaimed %d times after the wave, want 1", reclaimed)
	}
	// Another wave right after waits for the interval.
	for range reclaimBatch {
		m.left()
	}
	advance(reclaimQuiet)
	fire()
	if reclaimed != 1 || len(pending) != 1 {
		t.Fatalf("reclaimed %d within the interval", reclaimed)
	}
	advance(reclaimInterval)
	fire()
	if reclaimed != 2 {
		t.Fatalf("reclaimed %d after the interval, want 2", reclaimed)
	}
}

func TestBufPoolClasses(t *testing.T) {
	var p bufPool
	for _, tc := range []struct{ ask, want int }{{1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 16 << 10}, {60 << 10, 64 << 10}, {16 << 20, 16 << 20}} {
		b := p.get(tc.ask)
		if len(b.b) != tc.want {
			t.Errorf("get(%d) gave %d bytes, want %d", tc.ask, len(b.b), tc.want)
		}
		p.put(b)
	}
	if b := p.get(17 << 20); len(b.b) != 17<<20 || b.class != -1 {
		t.Errorf("an unpooled size: %d bytes, class %d", len(b.b), b.class)
	}
}

// A request sent while the previous one is still in flight (pipelined
// behind it, but read only after its answer) is answered too: the answer's
// tail goes out from the next wait, which cannot see those bytes, and the
// idle poller, which can, takes over after the handoff.
func TestHTTPRequestSentDuringTheExchange(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{}, 1)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	k := newRawClient(t, e.addr)
	io.WriteString(k.c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	io.WriteString(k.c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	release <- struct{}{}
	expectAnswer(t, k.br, "ok /first", false)
	expectAnswer(t, k.br, "ok /second", false)
	k.get(t, "/third", "ok /third", false)
	// Seen pipelining once, the connection defers no answer tail again.
	waitFor(t, "the connection to park", func() bool { return e.p.idle.idleCount() == 1 })
	var held *httpConn
	e.p.tracker.Range(func(cc conntrack.Conn, _ conntrack.State) bool { held = cc.(*httpConn); return false })
	e.p.idle.mu.Lock()
	pipelined := held.pipelined
	e.p.idle.mu.Unlock()
	if !pipelined {
		t.Fatal("the connection was not marked as pipelining")
	}
}

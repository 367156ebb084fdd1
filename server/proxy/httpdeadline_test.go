package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
	"github.com/mosnlite/mosnlite/service/stats"
)

// A keep-alive upstream connection keeps the read deadline of an earlier
// exchange while it is at least half a timeout away
// (cluster.Conn.KeepReadDeadline). These tests make that deadline expire
// while the next exchange waits for its answer, which is due before that
// exchange's own deadline.

// The timeline, from the first request's dispatch (t0): its deadline is
// t0+timeout; the second request goes at t0+gap, keeping that deadline
// (gap < timeout/2); the backend answers the second one at t0+answerAt,
// after the kept deadline and before the second's own, t0+gap+timeout.
const (
	keptTimeout  = time.Second
	keptGap      = 400 * time.Millisecond
	keptAnswerAt = 1200 * time.Millisecond
)

// keptBackend serves one upstream connection: the first request at once,
// the second at keptAnswerAt after the first arrived, or never if
// answerSecond is false (it then waits until the proxy closes the
// connection, and reports when it saw that on closed).
type keptBackend struct {
	ln           net.Listener
	answerSecond bool
	second       chan struct{} // closed when the second request has arrived
	closed       chan time.Time
}

func startKeptBackend(t *testing.T, answerSecond bool) *keptBackend {
	t.Helper()
	b := &keptBackend{ln: listen(t), answerSecond: answerSecond, second: make(chan struct{}), closed: make(chan time.Time, 1)}
	go b.serve()
	return b
}

func (b *keptBackend) serve() {
	c, err := b.ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	var first time.Time
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			b.closed <- time.Now()
			return
		}
		_ = req.Body.Close()
		switch i {
		case 0:
			first = time.Now()
		case 1:
			close(b.second)
			if !b.answerSecond {
				_, _ = io.Copy(io.Discard, br) // until the proxy closes it
				b.closed <- time.Now()
				return
			}
			time.Sleep(time.Until(first.Add(keptAnswerAt)))
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
	}
}

// keptClient sends the first request on a keep-alive connection, reads its
// answer, and sends the second keptGap later.
func keptClient(t *testing.T, addr string) (net.Conn, *bufio.Reader, time.Time) {
	t.Helper()
	c := dial(t, addr)
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	const req = "GET / HTTP/1.1\r\nHost: app\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if status, _ := readAnswer(t, br, "first"); status != 200 {
		t.Fatalf("first answer %d, want 200", status)
	}
	time.Sleep(time.Until(sent.Add(keptGap))) // the gap is the test's subject, not a wait for readiness
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c, br, time.Now()
}

// readAnswer reads one answer whole.
func readAnswer(t *testing.T, br *bufio.Reader, which string) (status int, body string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s answer: %v", which, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s answer's body: %v", which, err)
	}
	return resp.StatusCode, string(b)
}

func keptProxy(t *testing.T, cl config.Cluster) *httpEnv {
	return startHTTP(t, config.HTTPProxyConfig{UpstreamTimeout: config.Duration{Duration: keptTimeout}}, singleRoute(0), cl)
}

func TestKeptUpstreamDeadlineExpiringEarlyDoesNotEndTheWait(t *testing.T) {
	be := startKeptBackend(t, true)
	e := keptProxy(t, appCluster(be.ln.Addr().String()))
	_, br, sent := keptClient(t, e.addr)
	if status, body := readAnswer(t, br, "second"); status != 200 || body != "ok" {
		t.Fatalf("second answer %d %q after %v, want 200 \"ok\" (the kept deadline expired at about %v)",
			status, body, time.Since(sent).Round(time.Millisecond), keptTimeout-keptGap)
	}
}

// Over TLS the answer's head is read through tls.Conn (there is no raw
// send-then-read), whose timeout must not end the wait either.
func TestKeptUpstreamDeadlineExpiringEarlyOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "kept deadline ca")
	leaf := ca.Issue(t, tlstest.Opts{CN: "backend", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	ln := tls.NewListener(listen(t), &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	be := &keptBackend{ln: ln, answerSecond: true, second: make(chan struct{}), closed: make(chan time.Time, 1)}
	go be.serve()
	// The cluster's TLS is resolved by the config's loading.
	parsed, err := config.Parse([]byte(`{"servers": [{"listeners": [{"name": "web", "address": "127.0.0.1:0",
	    "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}]}],
	  "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
	    "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "app"}}]}]}]}],
	  "cluster_manager": {"clusters": [{"name": "app", "hosts": [{"address": "` + ln.Addr().String() + `"}],
	    "tls_context": {"status": true, "insecure_skip": true}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := keptProxy(t, parsed.ClusterManager.Clusters[0])
	_, br, sent := keptClient(t, e.addr)
	if status, body := readAnswer(t, br, "second"); status != 200 || body != "ok" {
		t.Fatalf("second answer %d %q after %v, want 200 \"ok\"", status, body, time.Since(sent).Round(time.Millisecond))
	}
}

func TestKeptUpstreamDeadlineStillTimesOutAtTheExchangesOwn(t *testing.T) {
	be := startKeptBackend(t, false)
	e := keptProxy(t, appCluster(be.ln.Addr().String()))
	_, br, sent := keptClient(t, e.addr)
	status, _ := readAnswer(t, br, "second")
	took := time.Since(sent)
	if status != http.StatusGatewayTimeout {
		t.Fatalf("second answer %d, want 504", status)
	}
	// The kept deadline expired keptTimeout-keptGap after the request;
	// the timeout is counted from the request itself, and ends the wait
	// then (a re-arm past it would be a missed timeout).
	if took < keptTimeout-50*time.Millisecond || took > keptTimeout+keptTimeout/2 {
		t.Fatalf("504 after %v, want at the %v timeout counted from the request", took.Round(time.Millisecond), keptTimeout)
	}
}

func TestClientGoneEndsAnUpstreamWaitUnderAKeptDeadline(t *testing.T) {
	be := startKeptBackend(t, false)
	e := keptProxy(t, appCluster(be.ln.Addr().String()))
	c, _, _ := keptClient(t, e.addr)
	select {
	case <-be.second:
	case <-time.After(10 * time.Second):
		t.Fatal("the second request never reached the backend")
	}
	gone := time.Now()
	c.Close()
	select {
	case at := <-be.closed:
		// Were the closing connection's abort taken for a kept deadline
		// expiring early, the wait would go on to the exchange's own
		// deadline, keptGap+keptTimeout after the first request.
		if d := at.Sub(gone); d > keptTimeout/2 {
			t.Fatalf("the upstream connection closed %v after the client left, want promptly", d.Round(time.Millisecond))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection was never closed")
	}
}

// Close sets its abort deadline on the exchange's upstream connection under
// mu; an exchange that ends after that (releaseUpstream) must not give that
// connection back to the pool, where the next exchange would find the
// deadline in the past.
func TestAClosedConnectionsUpstreamGoesNotBackToThePool(t *testing.T) {
	ln := listen(t)
	acceptEach(ln, func(c net.Conn) { t.Cleanup(func() { c.Close() }) })
	m := newManager(t, stats.New(), appCluster(ln.Addr().String()))
	cl := m.Get("app")
	for _, closed := range []bool{false, true} {
		h := cl.Pick(nil)
		up, err := cl.Connect(t.Context(), h)
		if err != nil {
			t.Fatal(err)
		}
		c := &httpConn{nc: &net.TCPConn{}}
		x := &exchange{clk: sysClock{}, body: reqBody{done: true}}
		x.info.Start = time.Now()
		if !c.setUpstream(up) {
			t.Fatal("setUpstream failed on an open connection")
		}
		if closed {
			c.mu.Lock()
			c.closed = true // what Close does before it aborts the upstream wait
			c.mu.Unlock()
		}
		c.releaseUpstream(x, cl, up, true)
		pooled := cl.Idle(h)
		if pooled != nil {
			cl.Discard(pooled)
		}
		if got := pooled == up; got == closed {
			t.Errorf("closed=%v: pooled=%v, want %v", closed, got, !closed)
		}
	}
}

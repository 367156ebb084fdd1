package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
)

func TestDrainInFlightRequestGetsConnectionClose(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	e.p.Drain()
	if e.p.Active() != 1 {
		t.Fatalf("Active = %d during the request, want 1", e.p.Active())
	}
	close(release)

	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("in-flight request failed: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "done" {
		t.Fatalf("response %d %q", resp.StatusCode, b)
	}
	if !resp.Close { // ReadResponse turns Connection: close into Close
		t.Fatalf("response lacks Connection: close: %v", resp.Header)
	}
	expectEOF(t, br)
	c.Close()
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestDrainClosesIdleKeepAlive(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	resp, body, br, c := rawExchange(t, e.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 200 || body != "ok" || resp.Close {
		t.Fatalf("first response %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	tr := e.p.tracker
	waitFor(t, "the connection to go idle", func() bool { return tr.Count(conntrack.Idle) == 1 })
	e.p.Drain()
	expectEOF(t, br)
	c.Close()
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestDrainServesAlreadySentRequest(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") })
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))

	// A connection whose request already waits in the socket when the
	// drained proxy first looks at it.
	l := listen(t)
	defer l.Close()
	client := dial(t, l.Addr().String())
	io.WriteString(client, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request bytes to arrive", func() bool { return inputPending(nc) })
	e.p.Drain()
	e.p.handle(nc)

	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("pending request not served: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "served" || !resp.Close {
		t.Fatalf("response %q close=%v, want served with Connection: close", b, resp.Close)
	}
	expectEOF(t, br)
	client.Close()

	// One with nothing sent is closed at once.
	quiet := dial(t, l.Addr().String())
	nc2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	e.p.handle(nc2)
	expectEOF(t, bufio.NewReader(quiet))
	quiet.Close()
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestCloseAllAbortsInFlightHTTP(t *testing.T) {
	arrived := make(chan struct{}, 1)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	e.p.CloseAll()
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		t.Fatal("got a response after CloseAll")
	}
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestIdleTimeoutClosesHTTPConn(t *testing.T) {
	e := startHTTP(t, config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: 50 * time.Millisecond}}, singleRoute(0), appCluster(closedAddr(t)))
	c := dial(t, e.addr)
	expectEOF(t, bufio.NewReader(c))
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestInputPending(t *testing.T) {
	l := listen(t)
	defer l.Close()
	client := dial(t, l.Addr().String())
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if inputPending(server) {
		t.Fatal("pending input reported on a quiet socket")
	}
	client.Write([]byte("x"))
	waitFor(t, "the byte to arrive", func() bool { return inputPending(server) })
	if !inputPending(server) {
		t.Fatal("peek consumed the byte")
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(server, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read after peek: %q %v", buf, err)
	}
	client.Close()
	// EOF is not a request.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if inputPending(server) {
			t.Fatal("EOF reported as pending input")
		}
		if _, err := server.Read(buf); err == io.EOF {
			break
		}
	}
	if inputPending(&net.TCPConn{}) {
		t.Fatal("unusable conn reported pending input")
	}
}

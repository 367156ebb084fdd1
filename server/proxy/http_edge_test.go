package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

func TestHTTPBodylessResponses(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "1234")
			if r.Method != http.MethodHead {
				w.Write(make([]byte, 1234))
			}
		}
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		method, path string
		status       int
		length       int64
	}{
		{"HEAD", "/", 200, 1234},
		{"GET", "/204", 204, 0},
		{"GET", "/304", 304, 0},
		{"GET", "/", 200, 1234},
	} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", tc.method, tc.path)
		resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		wantBody := tc.length
		if tc.method == "HEAD" {
			wantBody = 0
		}
		if resp.StatusCode != tc.status || resp.ContentLength != tc.length || n != wantBody {
			t.Fatalf("%s %s: status %d length %d body %d", tc.method, tc.path, resp.StatusCode, resp.ContentLength, n)
		}
		if len(resp.TransferEncoding) != 0 {
			t.Fatalf("%s %s: unexpected transfer-encoding %v", tc.method, tc.path, resp.TransferEncoding)
		}
	}
	// Every response above was framed right: one connection carried them all.
	if n := e.downstreamConns(); n != 1 {
		t.Errorf("downstream connections = %v, want 1", n)
	}
}

func TestHTTPLeastRequestAccountingReturnsToZero(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cl := appCluster(be.addr())
	cl.LBType = config.LBLeastRequest
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), cl)
	c := e.client()
	for range 3 {
		get(t, c, "http://"+e.addr+"/")
	}
	h := e.m.Get("app").Hosts()[0]
	waitFor(t, "in-flight count to return to 0", func() bool { return h.ActiveRequests() == 0 })
}

func TestHTTPEarlyUpstreamResponseClosesUnreadUpload(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, e.addr)
	size := 8 << 20
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
	go c.Write(make([]byte, size)) // may fail once the proxy gives up on it
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 413 || !resp.Close {
		t.Fatalf("status %d close=%v, want 413 with Connection: close", resp.StatusCode, resp.Close)
	}
}

func TestHTTPDirectResponseReadsAwayBody(t *testing.T) {
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(closedAddr(t)))
	c := dial(t, e.addr)
	io.WriteString(c, "POST /direct HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET /direct HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 418 || string(b) != "teapot" {
			t.Fatalf("response %d: %d %q", i, resp.StatusCode, b)
		}
		if resp.Close != (i == 1) {
			t.Fatalf("response %d: close=%v", i, resp.Close)
		}
	}
	expectEOF(t, br)
}

func TestHTTPUpstreamDiesMidBody(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	resp, err := e.client().Get("http://" + e.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated body read gave %v, want unexpected EOF", err)
	}
}

func TestHTTPOverUnixSocket(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%q", r.Header.Get("X-Forwarded-For"))
	})
	reg := stats.New()
	m := newManager(t, reg, appCluster(be.addr()))
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), m, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "http.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != `xff=""` {
		t.Fatalf("body %q: unix clients have no IP to forward", b)
	}
	waitFor(t, "idle", func() bool { return p.tracker.Count(0) == 1 })
	p.Drain()
	expectEOF(t, br)
	c.Close()
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// flakyListener fails Accept with the given errors first.
type flakyListener struct {
	net.Listener
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	return f.Listener.Accept()
}

func TestAcceptBacksOffOnTemporaryErrors(t *testing.T) {
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(closedAddr(t)))
	var delays []time.Duration
	e.p.sleep = func(d time.Duration) { delays = append(delays, d) }
	l := listen(t)
	fl := &flakyListener{Listener: l, errs: []error{
		&net.OpError{Op: "accept", Err: syscall.EMFILE},
		&net.OpError{Op: "accept", Err: syscall.EMFILE},
		&net.OpError{Op: "accept", Err: syscall.ECONNABORTED},
	}}
	l.Close() // after the injected errors, Accept sees a closed listener
	if err := e.p.Serve(fl); err != nil {
		t.Fatalf("Serve = %v, want nil on a closed listener", err)
	}
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	if fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Fatalf("backoff %v, want %v", delays, want)
	}

	fatal := &flakyListener{Listener: listen(t), errs: []error{errors.New("boom")}}
	defer fatal.Close()
	if err := e.p.Serve(fatal); err == nil {
		t.Fatal("Serve returned nil on a permanent accept error")
	}
}

func TestHTTPHeaderTooLarge(t *testing.T) {
	e := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(closedAddr(t)))
	c := dial(t, e.addr)
	go func() {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
		c.Write(bytes.Repeat([]byte("a"), config.DefaultMaxRequestHeadersKB<<10+8192))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !resp.Close {
		t.Fatalf("status %d close=%v, want 431 and close", resp.StatusCode, resp.Close)
	}
}

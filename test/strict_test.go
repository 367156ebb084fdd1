package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingBackend is an HTTP backend that counts every byte and every
// connection it receives, so that a test can tell that nothing of a refused
// request reached the upstream.
type recordingBackend struct {
	ln    net.Listener
	srv   *http.Server
	bytes atomic.Int64
	conns atomic.Int64
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingListener struct {
	net.Listener
	b *recordingBackend
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.b.conns.Add(1)
	return countingConn{c, &l.b.bytes}, nil
}

func newRecordingBackend(t testing.TB) *recordingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recordingBackend{ln: ln}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%d", r.Method, r.URL.Path, len(body))
	})}
	go b.srv.Serve(countingListener{ln, b})
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *recordingBackend) addr() string { return b.ln.Addr().String() }

// answer is what came back for a raw request.
type answer struct {
	status int
	body   string
	close  bool // Connection: close, and the connection then ended
}

// rawRequest writes raw on a fresh connection to target and reads one
// answer; it also reports whether the connection ended after it.
func rawRequest(t *testing.T, target, raw string) answer {
	t.Helper()
	c, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	go io.WriteString(c, raw) // may fail once the proxy has answered and closed
	return readAnswer(t, c, bufio.NewReader(c))
}

func readAnswer(t *testing.T, c net.Conn, br *bufio.Reader) answer {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer body: %v", err)
	}
	a := answer{status: resp.StatusCode, body: string(b)}
	if resp.Close {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := br.ReadByte()
		a.close = err == io.EOF
		if !a.close {
			t.Fatalf("answer said Connection: close, then the connection gave %v instead of EOF", err)
		}
	}
	return a
}

func strictEnv(t *testing.T, filterExtra obj) (target string, rec *recordingBackend, pid int) {
	t.Helper()
	dir := t.TempDir()
	p := newPorts(t)
	rec = newRecordingBackend(t)
	port := freePort(t)
	l := httpListener("web", addr(port), "r")
	cfg := l["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["config"].(obj)
	for k, v := range filterExtra {
		cfg[k] = v
	}
	c := mosnConfig(filepath.Join(dir, "uds"), p, "5s", []obj{l}, []obj{router("r", "rec")}, []obj{cluster("rec", rec.addr())})
	pr := startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", c), p)
	return addr(port), rec, pr.pid()
}

// Each malformed request gets the status RFC 9112 (and nginx or Envoy)
// give it, its connection is closed after the answer, and not one byte of
// it reaches the upstream.
func TestStrictRequestFraming(t *testing.T) {
	target, rec, _ := strictEnv(t, nil)
	next := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n" // must never reach the upstream
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding with Content-Length after it", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n", 400},
		{"invalid chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk without its CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400},
		{"bare LF after a chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
		{"bare LF after chunk data", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400},
		{"bare LF ending the body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\n", 400},
		{"space before the colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n", 400},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"two differing Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.bytes.Load()
			a := rawRequest(t, target, tc.raw+next)
			if a.status != tc.status || !a.close {
				t.Fatalf("got %d close=%v, want %d and the connection closed", a.status, a.close, tc.status)
			}
			if got := rec.bytes.Load() - before; got != 0 {
				t.Fatalf("%d bytes reached the upstream", got)
			}
		})
	}

	// The control cases: well-framed requests pass, and the connection
	// carries the next one.
	c, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"+
		"POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwxyz")
	for _, want := range []string{"POST /chunked body=8", "POST /length body=4"} {
		if a := readAnswer(t, c, br); a.status != 200 || a.body != want || a.close {
			t.Fatalf("got %d %q close=%v, want 200 %q on a kept connection", a.status, a.body, a.close, want)
		}
	}

	// A body that goes bad after its first chunk went upstream: the client
	// still gets 400, and the connection closes.
	c2, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c2, "POST /late HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	waitFor(t, "the first chunk to reach the upstream", func() bool { return rec.bytes.Load() > 0 })
	io.WriteString(c2, "nothex\r\n")
	if a := readAnswer(t, c2, bufio.NewReader(c2)); a.status != 400 || !a.close {
		t.Fatalf("late bad chunk: %d close=%v, want 400 and close", a.status, a.close)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func headWith(extra int, fields int) string {
	var b strings.Builder
	b.WriteString("GET /limits HTTP/1.1\r\nHost: a\r\n")
	for i := 1; i < fields; i++ { // Host is the first field
		fmt.Fprintf(&b, "X-F%d: v\r\n", i)
	}
	if extra > 0 {
		b.WriteString("X-Pad: " + strings.Repeat("p", extra) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// The configured limits answer 431, 408 and 413, and close.
func TestStrictLimitsConfigured(t *testing.T) {
	target, rec, _ := strictEnv(t, obj{
		"max_request_headers_kb":    8,
		"max_request_headers_count": 20,
		"request_header_timeout":    "1s",
		"max_request_body_bytes":    1000,
	})
	ok := func(name, raw string) {
		t.Helper()
		if a := rawRequest(t, target, raw); a.status != 200 || a.close {
			t.Fatalf("%s: %d close=%v, want 200 on a kept connection", name, a.status, a.close)
		}
	}
	refused := func(name, raw string, status int) {
		t.Helper()
		before := rec.bytes.Load()
		if a := rawRequest(t, target, raw); a.status != status || !a.close {
			t.Fatalf("%s: %d close=%v, want %d and close", name, a.status, a.close, status)
		}
		if rec.bytes.Load() != before {
			t.Fatalf("%s: bytes reached the upstream", name)
		}
	}
	ok("7 KiB head", headWith(7<<10, 1))
	refused("9 KiB head", headWith(9<<10, 1), 431)
	ok("20 fields", headWith(0, 20))
	refused("21 fields", headWith(0, 21), 431)
	ok("1000-byte body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("b", 1000))
	refused("1001-byte body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"+strings.Repeat("b", 1001), 413)
	refused("1001-byte chunked body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n"+strings.Repeat("b", 1001)+"\r\n0\r\n\r\n", 413)

	// A head that never ends: 408 once request_header_timeout has passed
	// since its first byte, far before the idle timeout (5 minutes).
	c, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
	a := readAnswer(t, c, bufio.NewReader(c))
	if a.status != 408 || !a.close {
		t.Fatalf("slow head: %d close=%v, want 408 and close", a.status, a.close)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("408 after %v, before the 1s header timeout", waited)
	}
}

// The default limits: 60 KiB of request line and headers, 100 fields; and
// 64 clients each sending an endless 1 MiB head cost the proxy well under
// 8 MB, each answered 431 and closed.
func TestStrictLimitsDefault(t *testing.T) {
	target, _, pid := strictEnv(t, nil)
	if a := rawRequest(t, target, headWith(59<<10, 1)); a.status != 200 {
		t.Fatalf("59 KiB head: %d, want 200", a.status)
	}
	if a := rawRequest(t, target, headWith(61<<10, 1)); a.status != 431 || !a.close {
		t.Fatalf("61 KiB head: %d close=%v, want 431 and close", a.status, a.close)
	}
	if a := rawRequest(t, target, headWith(0, 100)); a.status != 200 {
		t.Fatalf("100 fields: %d, want 200", a.status)
	}
	if a := rawRequest(t, target, headWith(0, 101)); a.status != 431 || !a.close {
		t.Fatalf("101 fields: %d close=%v, want 431 and close", a.status, a.close)
	}

	base := peakRSS(t, pid)
	var wg sync.WaitGroup
	statuses := make([]int, 64)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", target)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			go func() {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
				chunk := strings.Repeat("x", 64<<10)
				for range 16 { // 1 MiB, never ended
					if _, err := io.WriteString(c, chunk); err != nil {
						return
					}
				}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 431 {
			t.Fatalf("client %d got %d, want 431", i, s)
		}
	}
	if grew := peakRSS(t, pid) - base; grew >= 8<<20 {
		t.Fatalf("64 endless 1 MiB heads took %d MB at the peak, want under 8 MB", grew>>20)
	}
}

// peakRSS is the process's peak resident size so far (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// badBackend answers every request with the same raw bytes, then closes,
// and counts the connections it accepted.
type badBackend struct {
	ln    net.Listener
	conns atomic.Int64
}

func newBadBackend(t *testing.T, answer string) *badBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &badBackend{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return b
}

// A malformed upstream response is a 502 for the client, whose connection
// stays; the upstream connection is not used again.
func TestUpstreamMalformedResponses(t *testing.T) {
	cases := map[string]string{
		"two lengths":     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"negative length": "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"bad status line": "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
		"garbage":         "SSH-2.0-OpenSSH_9.2\r\n\r\n",
	}
	dir := t.TempDir()
	p := newPorts(t)
	var routes, clusters []obj
	backends := map[string]*badBackend{}
	i := 0
	for name, raw := range cases {
		b := newBadBackend(t, raw)
		backends[name] = b
		path := fmt.Sprintf("/case%d", i)
		i++
		routes = append(routes, obj{"match": obj{"prefix": path}, "route": obj{"cluster_name": "c" + path[1:]}})
		clusters = append(clusters, cluster("c"+path[1:], b.ln.Addr().String()))
		cases[name] = path
	}
	port := freePort(t)
	r := obj{"router_config_name": "r", "virtual_hosts": []obj{{"name": "all", "domains": []string{"*"}, "routers": routes}}}
	cfg := mosnConfig(filepath.Join(dir, "uds"), p, "5s", []obj{httpListener("web", addr(port), "r")}, []obj{r}, clusters)
	startMosn(t, "mosnlite", writeJSON(t, dir, "c.json", cfg), p)

	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr(port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			br := bufio.NewReader(c)
			for n := 1; n <= 2; n++ {
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path)
				if a := readAnswer(t, c, br); a.status != 502 || a.close {
					t.Fatalf("request %d: %d close=%v, want 502 on a kept connection", n, a.status, a.close)
				}
				if got := backends[name].conns.Load(); got != int64(n) {
					t.Fatalf("after request %d the upstream saw %d connections: a bad one was reused", n, got)
				}
			}
		})
	}
}

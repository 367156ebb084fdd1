package http1

import (
	"bufio"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func parseReq(t *testing.T, raw string) (*Request, error) {
	t.Helper()
	b := []byte(raw)
	skip := SkipEmptyLines(b)
	end, _ := HeadEnd(b[skip:], 0)
	if end < 0 {
		return nil, ErrIncomplete
	}
	r := &Request{}
	err := ParseRequest(b[skip:skip+end], r, 100)
	return r, err
}

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func TestParseRequestAccepts(t *testing.T) {
	r, err := parseReq(t, "\r\nPOST /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 12\r\n"+
		"Connection: X-Hop, keep-alive\r\nX-Hop: 1\r\nExpect: 100-Continue\r\nX-Empty:\r\nX-Sp:   v  \t\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Method) != "POST" || string(r.Path) != "/a/b?c=d" || r.Minor != 1 || string(r.Host) != "example.com:8080" ||
		r.ContentLength != 12 || r.Chunked || r.Close || !r.Expect100 {
		t.Fatalf("parsed %+v", r)
	}
	if len(r.Headers) != 7 || string(r.Headers[5].Value) != "" || string(r.Headers[6].Value) != "v" {
		t.Fatalf("headers %q", r.Headers)
	}
	if !r.ConnectionOption([]byte("x-hop")) || r.ConnectionOption([]byte("x-sp")) {
		t.Fatal("Connection options misread")
	}

	// LF-only line ends are accepted (RFC 9112 §2.2 allows it).
	r, err = parseReq(t, "GET / HTTP/1.0\nConnection: keep-alive\n\n")
	if err != nil || r.Minor != 0 || r.Close || !r.KeepAlive || r.ContentLength != -1 || r.HasBody() {
		t.Fatalf("LF-only 1.0 keep-alive: %+v %v", r, err)
	}
	r, err = parseReq(t, "GET / HTTP/1.0\r\n\r\n")
	if err != nil || !r.Close {
		t.Fatalf("1.0 without keep-alive must close: %+v %v", r, err)
	}
	r, err = parseReq(t, "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-length: 5, 5\r\n\r\n")
	if statusOf(err) != 400 {
		t.Fatalf("CL with TE: %v", err)
	}
	r, err = parseReq(t, "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,Chunked\r\n\r\n")
	if err != nil || !r.Chunked || r.ContentLength != -1 {
		t.Fatalf("chunked: %+v %v", r, err)
	}
	r, err = parseReq(t, "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n")
	if err != nil || r.ContentLength != 5 {
		t.Fatalf("repeated equal lengths: %+v %v", r, err)
	}
	// Absolute form: the authority is the host; Host must still be sent.
	r, err = parseReq(t, "GET HTTP://other.example/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n")
	if err != nil || string(r.Host) != "other.example" || string(r.Path) != "/p?q" {
		t.Fatalf("absolute form: %+v %v", r, err)
	}
	r, err = parseReq(t, "GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n")
	if err != nil || string(r.Host) != "a" || string(r.Path) != "?q" {
		t.Fatalf("absolute form without a path: %+v %v", r, err)
	}
	r, err = parseReq(t, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
	if err != nil || string(r.Path) != "*" {
		t.Fatalf("asterisk: %+v %v", r, err)
	}
	r, err = parseReq(t, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if err != nil || string(r.Upgrade) != "websocket" || !r.UpgradeAsked {
		t.Fatalf("upgrade: %+v %v", r, err)
	}
	r, err = parseReq(t, "GET / HTTP/1.2\r\nHost: a\r\n\r\n")
	if err != nil || r.Minor != 1 {
		t.Fatalf("HTTP/1.2 is read as 1.1: %+v %v", r, err)
	}
}

func TestParseRequestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400},
		{"whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"coding with parameters", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo;x=1, chunked\r\n\r\n", 501},
		{"empty TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400},
		{"two lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
		{"length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400},
		{"negative length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
		{"plus length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400},
		{"huge length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"empty length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"userinfo host", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400},
		{"bad name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400},
		{"garbage line", "THIS IS NOT HTTP\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CTL in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/0.9 style", "GET /\r\n\r\n", 400},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	} {
		_, err := parseReq(t, tc.raw)
		if statusOf(err) != tc.status {
			t.Errorf("%s: got %v, want status %d", tc.name, err, tc.status)
		}
	}
}

func TestTooManyHeaders(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 99) + "\r\n"
	if _, err := parseReq(t, raw); err != nil {
		t.Fatalf("100 fields: %v", err)
	}
	raw = "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 100) + "\r\n"
	if _, err := parseReq(t, raw); statusOf(err) != 431 {
		t.Fatalf("101 fields: %v, want 431", err)
	}
}

func TestHeadEndAcrossReads(t *testing.T) {
	raw := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT")
	for split := 0; split <= len(raw); split++ {
		end, next := HeadEnd(raw[:split], 0)
		if end < 0 {
			end, _ = HeadEnd(raw, next)
		}
		if end != len(raw)-4 {
			t.Fatalf("split %d: end %d, want %d", split, end, len(raw)-4)
		}
	}
	if end, _ := HeadEnd([]byte("GET / HTTP/1.1\nHost: a\n\nX"), 0); end != 24 {
		t.Fatalf("LF-only end %d", end)
	}
	if n := SkipEmptyLines([]byte("\r\n\n\r\nGET")); n != 5 {
		t.Fatalf("skipped %d", n)
	}
	if n := SkipEmptyLines([]byte("\r")); n != 0 {
		t.Fatalf("a lone CR is not an empty line: skipped %d", n)
	}
}

func parseResp(raw string) (*Response, error) {
	b := []byte(raw)
	end, _ := HeadEnd(b, 0)
	if end < 0 {
		return nil, ErrIncomplete
	}
	r := &Response{}
	return r, ParseResponse(b[:end], r, 100)
}

func TestParseResponse(t *testing.T) {
	r, err := parseResp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: X-A\r\nX-A: 1\r\n\r\n")
	if err != nil || r.Status != 200 || string(r.Reason) != "OK" || r.ContentLength != 5 || r.Close || r.CloseDelimited ||
		!r.ConnectionOption([]byte("X-a")) {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = parseResp("HTTP/1.1 204\r\n\r\n")
	if err != nil || r.Status != 204 || len(r.Reason) != 0 {
		t.Fatalf("no reason: %+v %v", r, err)
	}
	r, err = parseResp("HTTP/1.0 200 OK\r\n\r\n")
	if err != nil || !r.Close || !r.CloseDelimited {
		t.Fatalf("1.0 close-delimited: %+v %v", r, err)
	}
	r, err = parseResp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n")
	if err != nil || !r.Chunked || r.ContentLength != -1 || !r.Close {
		t.Fatalf("TE beside CL: chunked, then close: %+v %v", r, err)
	}
	r, err = parseResp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
	if err != nil || r.Chunked || !r.CloseDelimited || !r.Close {
		t.Fatalf("TE without chunked: %+v %v", r, err)
	}
	for name, raw := range map[string]string{
		"two lengths":     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"negative length": "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"bad status line": "HTTP/1.1 2000 OK\r\n\r\n",
		"no status":       "HTTP/1.1 OK\r\n\r\n",
		"garbage":         "SSH-2.0-OpenSSH\r\n\r\n",
		"status below":    "HTTP/1.1 099 x\r\n\r\n",
		"bad field":       "HTTP/1.1 200 OK\r\nX y: 1\r\n\r\n",
		"HTTP/2":          "HTTP/2.0 200 OK\r\n\r\n",
	} {
		if _, err := parseResp(raw); statusOf(err) != 502 {
			t.Errorf("%s: %v, want 502", name, err)
		}
	}
}

// Every request this parser accepts, net/http reads with the same method,
// host and body framing: no message means two things to two parsers.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET http://h/p HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.0\nConnection: keep-alive\n\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		skip := SkipEmptyLines(b)
		end, _ := HeadEnd(b[skip:], 0)
		if end < 0 {
			return
		}
		var r Request
		if err := ParseRequest(b[skip:skip+end], &r, 100); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 505 {
				t.Fatalf("error without a status: %v", err)
			}
			return
		}
		if r.ContentLength >= 0 && r.Chunked {
			t.Fatal("both a length and chunked")
		}
		gr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(b))))
		if err != nil {
			return // net/http is stricter about some targets; refusing is safe
		}
		if gr.Method != string(r.Method) {
			t.Fatalf("method %q vs net/http %q", r.Method, gr.Method)
		}
		chunked := len(gr.TransferEncoding) > 0
		if chunked != r.Chunked || (!chunked && gr.ContentLength != max(r.ContentLength, 0)) {
			t.Fatalf("framing: chunked %v length %d; net/http chunked %v length %d", r.Chunked, r.ContentLength, chunked, gr.ContentLength)
		}
		if r.Minor == 1 && !strings.EqualFold(gr.Host, string(r.Host)) {
			t.Fatalf("host %q vs net/http %q", r.Host, gr.Host)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		end, _ := HeadEnd(b, 0)
		if end < 0 {
			return
		}
		var r Response
		if err := ParseResponse(b[:end], &r, 100); err != nil {
			if statusOf(err) != 502 {
				t.Fatalf("response error without 502: %v", err)
			}
			return
		}
		if r.Status < 100 || r.Status > 999 || (r.Chunked && r.ContentLength >= 0) || (r.Chunked && r.CloseDelimited) ||
			(r.CloseDelimited && r.ContentLength >= 0) {
			t.Fatalf("inconsistent %+v", r)
		}
	})
}

func TestParseAllocatesNothing(t *testing.T) {
	raw := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n")
	var r Request
	_ = ParseRequest(raw, &r, 100) // grows r.Headers once
	if n := testing.AllocsPerRun(100, func() {
		if err := ParseRequest(raw, &r, 100); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("ParseRequest allocates %v times per request", n)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\nDate: x\r\n\r\n")
	var rr Response
	_ = ParseResponse(resp, &rr, 100)
	if n := testing.AllocsPerRun(100, func() { _ = ParseResponse(resp, &rr, 100) }); n != 0 {
		t.Fatalf("ParseResponse allocates %v times", n)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	raw := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n")
	var r Request
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		end, _ := HeadEnd(raw, 0)
		if err := ParseRequest(raw[:end], &r, 100); err != nil {
			b.Fatal(err)
		}
	}
}

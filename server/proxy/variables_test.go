package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// render fills the MOSN variables names (without their %s) from info, one
// value a line.
func render(t *testing.T, info *RequestInfo, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		v, err := ParseVariable(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = string(info.AppendVariable(nil, v))
	}
	return out
}

// The variables of an access log line, filled by a real exchange: the
// request as the client sent it, the response as the client got it (the
// route's response header operations applied), sizes, addresses, ids.
func TestVariablesOfAnHTTPExchange(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Up", "u")
		w.Header().Set("Content-Length", "12")
		io.WriteString(w, "hello, "+string(b))
	})
	no := false
	router := routeTo(&config.RouteAction{ClusterName: "app", PrefixRewrite: "/v2/",
		ResponseHeadersToAdd: []config.HeaderValueOption{{Header: &config.HeaderValue{Key: "X-Up", Value: "proxied"}, Append: &no}}}, "/api/")
	names := []string{"request_method", "request_path", "request_uri", "request_arg", "request_arg_b", "Http1_request_header_X-Req",
		"response_header_x-up", "response_code", "bytes_sent", "bytes_received", "request_length", "upstream_cluster",
		"upstream_host", "downstream_remote_address", "downstream_local_address", "listener_port", "connection_id",
		"upstream_connection_id", "upstream_local_address", "cookie_sid", "response_flag", "protocol", "request_scheme"}
	lines := make(chan map[string]string, 1)
	e := startTunedHTTP(t, func(p *httpProxy) {
		p.observers = append(p.observers, func(info *RequestInfo) { lines <- render(t, info, names...) })
	}, config.HTTPProxyConfig{}, router, config.Cluster{Name: "app", Hosts: []config.Host{{Address: be.addr(), Hostname: "app-1"}}})
	c := dial(t, e.addr)
	br := bufio.NewReader(c)
	head := "POST /api/x%20y?a=1&b=two HTTP/1.1\r\nHost: h\r\nX-Req: r1\r\nCookie: sid=abc; z=1\r\nContent-Length: 5\r\n\r\n"
	io.WriteString(c, head+"world")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Up") != "proxied" {
		t.Fatalf("response %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	got := <-lines
	local := c.LocalAddr().String()
	port := e.addr[strings.LastIndexByte(e.addr, ':')+1:]
	want := map[string]string{
		"request_method": "POST", "request_path": "/api/x y", "request_uri": "/api/x%20y?a=1&b=two", "request_arg": "a=1&b=two",
		"request_arg_b": "two", "Http1_request_header_X-Req": "r1", "response_header_x-up": "proxied", "response_code": "200",
		"bytes_sent": "12", "bytes_received": "5", "request_length": fmt.Sprint(len(head) + 5), "upstream_cluster": "app",
		"upstream_host": "app-1", "downstream_remote_address": local, "downstream_local_address": e.addr, "listener_port": port,
		"cookie_sid": "abc", "response_flag": "false", "protocol": "Http1", "request_scheme": "http",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%%%s%% = %q, want %q", k, got[k], w)
		}
	}
	for _, k := range []string{"connection_id", "upstream_connection_id", "upstream_local_address"} {
		if got[k] == "-" || got[k] == "" {
			t.Errorf("%%%s%% has no value", k)
		}
	}

	// A request no route takes: no upstream, flagged.
	io.WriteString(c, "GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 404 {
		t.Fatalf("no route: %v %v", resp, err)
	}
	got = <-lines
	for k, w := range map[string]string{"response_code": "404", "upstream_host": "-", "upstream_cluster": "-",
		"upstream_connection_id": "-", "response_flag": "true", "response_header_x-up": "-"} {
		if got[k] != w {
			t.Errorf("no route: %%%s%% = %q, want %q", k, got[k], w)
		}
	}
}

// A TCP session's record: bytes each way, addresses, the upstream host;
// HTTP variables are "-".
func TestVariablesOfATCPSession(t *testing.T) {
	echo := startEcho(t)
	lines := make(chan map[string]string, 1)
	names := []string{"bytes_received", "bytes_sent", "upstream_host", "upstream_cluster", "request_method", "response_flag", "listener_name"}
	m := newManager(t, nil, config.Cluster{Name: "echo", Hosts: []config.Host{{Address: echo.addr, Hostname: "echo-1"}}})
	p, err := newTCP(tcpListener("echo", 0), m, nil, quietLog(), WithSessionObserver(func(info *RequestInfo) {
		lines <- render(t, info, names...)
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, serve(t, p))
	roundTrip(t, c, "ping-pong")
	c.CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	got := <-lines
	for k, w := range map[string]string{"bytes_received": "9", "bytes_sent": "9", "upstream_host": "echo-1",
		"upstream_cluster": "echo", "request_method": "-", "response_flag": "false"} {
		if got[k] != w {
			t.Errorf("%%%s%% = %q, want %q", k, got[k], w)
		}
	}
}

// Addresses print as MOSN's (net.Addr's String), IPv4-mapped ones as IPv4.
func TestAppendAddr(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80}, "10.0.0.1:80"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 8080}, "[::1]:8080"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "[fe80::1%eth0]:1"},
		{&net.UnixAddr{Name: "/run/a.sock", Net: "unix"}, "/run/a.sock"},
		{&net.UnixAddr{Name: "", Net: "unix"}, "-"},
		{nil, "-"},
	} {
		if got := string(appendAddr(nil, tc.a)); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.a, got, tc.want)
		}
	}
}

// A tcp_proxy session over the cluster's max_connections is closed at
// once, its record flagged; the session holding the place is untouched.
func TestTCPSessionOverMaxConnections(t *testing.T) {
	echo := startEcho(t)
	flags := make(chan ResponseFlags, 2)
	m := newManager(t, nil, config.Cluster{Name: "echo", Hosts: []config.Host{{Address: echo.addr}},
		CircuitBreakers: []config.Thresholds{{MaxConnections: 1}}})
	p, err := newTCP(tcpListener("echo", 0), m, nil, quietLog(), WithSessionObserver(func(info *RequestInfo) { flags <- info.Flags }))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)
	first := dial(t, addr)
	roundTrip(t, first, "holds the place")
	second := dial(t, addr)
	_ = second.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := second.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("second session: read %d, %v; want it closed", n, err)
	}
	if f := <-flags; f&FlagUpstreamOverflow == 0 {
		t.Fatalf("second session's flags %#x, want upstream overflow", f)
	}
	roundTrip(t, first, "still served")
	first.Close()
}

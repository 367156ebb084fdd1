package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

const wsHandshake = "GET /chat HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

const switched = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

// upgradeRoute routes everything to "app"; upgrades lists the route's
// upgrade_configs.
func upgradeRoute(upgrades ...config.UpgradeConfig) *config.Router {
	return &config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "app", UpgradeConfigs: upgrades}},
	}}}}
}

// readRequest reads one request head on the upstream side of the proxy; the
// reader is returned for what follows it.
func readRequest(t *testing.T, up net.Conn) (*http.Request, *bufio.Reader) {
	t.Helper()
	br := bufio.NewReader(up)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("upstream: read request: %v", err)
	}
	return req, br
}

// readSwitch reads the client's 101 head; whatever follows stays in br.
func readSwitch(t *testing.T, br *bufio.Reader) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("client: read 101: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("client: status %d, want 101", resp.StatusCode)
	}
	return resp
}

// openTunnel dials the proxy at addr, sends the handshake, lets the
// upstream answer 101 followed by first, and returns the client (its
// reader past the 101) and the upstream side of the tunnel.
func openTunnel(t *testing.T, addr string, be *tcpBackend, first string) (c *net.TCPConn, cbr *bufio.Reader, up *net.TCPConn) {
	t.Helper()
	c = dial(t, addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, wsHandshake)
	up = be.accept(t)
	readRequest(t, up)
	io.WriteString(up, switched+first)
	cbr = bufio.NewReader(c)
	readSwitch(t, cbr)
	return c, cbr, up
}

// halfCloseBothWays half-closes the client's side, then the upstream's,
// and checks that each FIN reaches the other end.
func halfCloseBothWays(t *testing.T, c, up *net.TCPConn) {
	t.Helper()
	c.CloseWrite()
	if n, err := up.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("upstream after the client's half-close: %d %v", n, err)
	}
	up.CloseWrite()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client after the upstream's half-close: %d %v", n, err)
	}
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

func tunnelGauge(reg *stats.Registry) float64 {
	return reg.Gauge("http.downstream_cx_upgrades_active", "", "listener", "web").Value()
}

// openUpstream is the cluster's count of open upstream connections.
func openUpstream(reg *stats.Registry) float64 {
	return reg.Gauge(stats.ClusterCxActive, "", "cluster", "app").Value()
}

func TestUpgradeTunnelForwardsHeadersAndBytesBothWays(t *testing.T) {
	be := startTCPBackend(t)
	e := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(), appCluster(be.addr))
	c := dial(t, e.addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// The client's first frame follows its handshake at once.
	if _, err := io.WriteString(c, wsHandshake+"early"); err != nil {
		t.Fatal(err)
	}
	up := be.accept(t)
	req, ubr := readRequest(t, up)
	if got := req.Header.Get("Upgrade"); got != "websocket" {
		t.Errorf("upstream Upgrade = %q, want websocket", got)
	}
	if got := req.Header.Get("Connection"); !strings.EqualFold(got, "upgrade") {
		t.Errorf("upstream Connection = %q, want Upgrade", got)
	}
	if req.Header.Get("Sec-WebSocket-Key") != "dGhlIHNhbXBsZSBub25jZQ==" || req.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Errorf("upstream lost the end-to-end handshake fields: %v", req.Header)
	}
	// The upstream's first frame follows its 101 in the same write.
	if _, err := io.WriteString(up, switched+"hello"); err != nil {
		t.Fatal(err)
	}
	// What the client sent after its handshake goes up once it switched.
	if got := readN(t, ubr, 5); got != "early" {
		t.Fatalf("upstream read %q after the handshake, want early", got)
	}
	cbr := bufio.NewReader(c)
	resp := readSwitch(t, cbr)
	if resp.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") ||
		resp.Header.Get("Sec-WebSocket-Accept") == "" {
		t.Fatalf("client 101 fields: %v", resp.Header)
	}
	if got := readN(t, cbr, 5); got != "hello" {
		t.Fatalf("client read %q after the 101, want hello", got)
	}
	if cbr.Buffered() != 0 {
		t.Fatalf("%d unexpected bytes after the first frame", cbr.Buffered())
	}
	waitFor(t, "the tunnel gauge", func() bool { return tunnelGauge(e.reg) == 1 })
	if got := e.reg.Counter("http.downstream_cx_upgrades_total", "", "listener", "web").Value(); got != 1 {
		t.Fatalf("upgrades_total = %v, want 1", got)
	}
	if got := e.requests("app", "1xx"); got != 1 {
		t.Fatalf("1xx requests = %v, want 1", got)
	}
	// A megabyte each way through the tunnel.
	big := payload(1 << 20)
	send(t, c, up, big)
	send(t, up, c, big)
	if e.p.Active() != 1 {
		t.Fatalf("%d tracked connections, want 1 (the tunnel)", e.p.Active())
	}
	// The handshake request has ended: not in flight any more, on either
	// side; the tunnel's upstream connection is open.
	if a, u, o := e.reg.Gauge(stats.HTTPRequestsActive, "", "listener", "web").Value(),
		e.reg.Gauge(stats.ClusterRequestsActive, "", "cluster", "app").Value(), openUpstream(e.reg); a != 0 || u != 0 || o != 1 {
		t.Fatalf("requests active %v, upstream requests active %v, upstream connections open %v; want 0, 0, 1", a, u, o)
	}

	// Half-close, client first: the upstream sees EOF and can still answer.
	c.CloseWrite()
	if n, err := up.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("upstream after the client's half-close: %d %v", n, err)
	}
	send(t, up, c, []byte("after your FIN"))
	up.CloseWrite()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client after the upstream's half-close: %d %v", n, err)
	}
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if g, o := tunnelGauge(e.reg), openUpstream(e.reg); g != 0 || o != 0 {
		t.Fatalf("tunnel gauge %v, upstream connections open %v after the end; want 0, 0", g, o)
	}
	// Every byte counted once, each way: the handshake by the HTTP
	// connection, the rest by the tunnel.
	wantRx := len(wsHandshake) + len("early") + len(big)
	wantTx := len(switched) + len("hello") + len(big) + len("after your FIN")
	rx := e.reg.Counter("listener.downstream_cx_rx_bytes_total", "", "listener", "web").Value()
	tx := e.reg.Counter("listener.downstream_cx_tx_bytes_total", "", "listener", "web").Value()
	if rx != float64(wantRx) || tx != float64(wantTx) {
		t.Fatalf("byte counters rx=%v tx=%v, want %d and %d", rx, tx, wantRx, wantTx)
	}
	// The upstream connection of a tunnel never goes back to the pool.
	if n := e.m.Get("app").Hosts()[0].IdleConns(); n != 0 {
		t.Fatalf("%d pooled upstream connections after a tunnel, want 0", n)
	}
}

func TestUpgradeUpstreamHalfClosesFirst(t *testing.T) {
	be := startTCPBackend(t)
	e := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(), appCluster(be.addr))
	c, cbr, up := openTunnel(t, e.addr, be, "bye")
	up.CloseWrite()
	if got, err := io.ReadAll(cbr); string(got) != "bye" || err != nil {
		t.Fatalf("client read %q %v, want bye then EOF", got, err)
	}
	// The client's side is still open: what it sends gets through.
	send(t, c, up, []byte("still talking"))
	c.CloseWrite()
	if n, err := up.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("upstream after the client's half-close: %d %v", n, err)
	}
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestUpgradeAnsweredWithoutSwitchStaysHTTP(t *testing.T) {
	be := startTCPBackend(t)
	e := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(), appCluster(be.addr))
	c := dial(t, e.addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, wsHandshake)
	up := be.accept(t)
	req, ubr := readRequest(t, up)
	if req.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upstream Upgrade = %q", req.Header.Get("Upgrade"))
	}
	io.WriteString(up, "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\nnope")
	cbr := bufio.NewReader(c)
	resp, err := http.ReadResponse(cbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 426 || string(body) != "nope" || resp.Close {
		t.Fatalf("client got %d %q close=%v, want the 426 relayed on a kept connection", resp.StatusCode, body, resp.Close)
	}
	if resp.Header.Get("Upgrade") != "" {
		t.Errorf("a hop-by-hop Upgrade of a plain answer reached the client: %v", resp.Header)
	}
	// The next request on the same connection is plain HTTP, on the same
	// upstream connection (which went back to the pool).
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: app\r\n\r\n")
	req, err = http.ReadRequest(ubr)
	if err != nil || req.URL.Path != "/next" || req.Header.Get("Upgrade") != "" {
		t.Fatalf("upstream read %v %v, want a plain GET /next", req, err)
	}
	io.WriteString(up, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	resp, err = http.ReadResponse(cbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("second answer %d %q", resp.StatusCode, body)
	}
	if got := e.reg.Counter("http.downstream_cx_upgrades_total", "", "listener", "web").Value(); got != 0 {
		t.Fatalf("upgrades_total = %v, want 0", got)
	}
}

func TestUpgradeRefusedByRoute(t *testing.T) {
	be := startTCPBackend(t)
	off := false
	e := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(config.UpgradeConfig{UpgradeType: "WebSocket", Enabled: &off}),
		appCluster(be.addr))
	resp, body, br, c := rawExchange(t, e.addr, wsHandshake)
	if resp.StatusCode != http.StatusForbidden || resp.Close || resp.Header.Get("Upgrade") != "" {
		t.Fatalf("refused upgrade: %d %q close=%v %v, want 403 on a kept connection", resp.StatusCode, body, resp.Close, resp.Header)
	}
	select {
	case up := <-be.conns:
		up.Close()
		t.Fatal("a refused upgrade reached the upstream")
	default:
	}
	// Another protocol is not refused by a websocket switch.
	io.WriteString(c, strings.Replace(wsHandshake, "Upgrade: websocket", "Upgrade: foo/2", 1))
	up := be.accept(t)
	if req, _ := readRequest(t, up); req.Header.Get("Upgrade") != "foo/2" {
		t.Fatalf("upstream Upgrade = %q, want foo/2", req.Header.Get("Upgrade"))
	}
	io.WriteString(up, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/2\r\nConnection: Upgrade\r\n\r\n")
	if r := readSwitch(t, br); r.Header.Get("Upgrade") != "foo/2" {
		t.Fatalf("client Upgrade = %q", r.Header.Get("Upgrade"))
	}
	send(t, c, up, []byte("foo bytes"))
}

func TestUpgradeRouteMatchesProtocolNames(t *testing.T) {
	off, on := false, true
	r := routeResult{action: &routeAction{upgrades: map[string]bool{"websocket": false, "h2c": true}}}
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"websocket", false}, {"WebSocket", false}, {"h2c", true}, {"foo", true},
		{"foo, websocket", false}, {"websocket/13", false}, {" h2c , foo/1 ", true},
	} {
		if got := r.upgradeAllowed([]byte(tc.value)); got != tc.ok {
			t.Errorf("Upgrade: %q allowed = %v, want %v", tc.value, got, tc.ok)
		}
	}
	a := config.RouteAction{UpgradeConfigs: []config.UpgradeConfig{{UpgradeType: "websocket", Enabled: &off}, {UpgradeType: "x", Enabled: &on}, {UpgradeType: "y"}}}
	for proto, want := range map[string][2]bool{"WEBSOCKET": {false, true}, "x": {true, true}, "y": {true, true}, "z": {true, false}} {
		if en, listed := a.UpgradeEnabled(proto); en != want[0] || listed != want[1] {
			t.Errorf("UpgradeEnabled(%q) = %v %v, want %v", proto, en, listed, want)
		}
	}
}

func TestUpgradeWithBodyHTTP10OrH2CIsAPlainRequest(t *testing.T) {
	be := startTCPBackend(t)
	e := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(), appCluster(be.addr))
	for _, raw := range []string{
		"POST /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi",
		"GET /chat HTTP/1.0\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
	} {
		c := dial(t, e.addr)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, raw)
		up := be.accept(t)
		req, _ := readRequest(t, up)
		if req.Header.Get("Upgrade") != "" {
			t.Fatalf("%q: upstream saw Upgrade %q", raw, req.Header.Get("Upgrade"))
		}
		// An upstream that switches anyway is a bad gateway.
		io.WriteString(up, switched)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%q: %v %v, want 502", raw, resp, err)
		}
		c.Close()
	}
}

func TestUpgradeTunnelIdleTimeout(t *testing.T) {
	be := startTCPBackend(t)
	const idle = 300 * time.Millisecond
	e := startHTTP(t, config.HTTPProxyConfig{IdleTimeout: config.Duration{Duration: idle}}, upgradeRoute(), appCluster(be.addr))
	c, cbr, up := openTunnel(t, e.addr, be, "")
	// Traffic keeps it open past the idle timeout…
	for range 4 {
		time.Sleep(idle / 2)
		send(t, c, up, []byte("ping"))
	}
	// …silence closes both sides.
	quiet := time.Now()
	if _, err := cbr.ReadByte(); err == nil {
		t.Fatal("client read a byte from an idle tunnel")
	}
	if waited := time.Since(quiet); waited < idle*2/3 {
		t.Fatalf("idle tunnel closed after %s, want about the idle timeout %s", waited, idle)
	}
	if _, err := up.Read(make([]byte, 1)); err == nil {
		t.Fatal("upstream read a byte from an idle tunnel")
	}
	if err := e.p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestUpgradeTunnelMovesToAnotherProxy(t *testing.T) {
	be := startTCPBackend(t)
	a := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(), appCluster(be.addr))
	regB := stats.New()
	b, err := newHTTP(httpListener(config.HTTPProxyConfig{}), upgradeRoute(), newManager(t, regB, appCluster(be.addr)), regB, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.CloseAll()
		if err := b.Wait(waitCtx(t)); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	c := dial(t, a.addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: app\r\n\r\n")
	up := be.accept(t)
	_, ubr := readRequest(t, up)
	io.WriteString(up, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	cbr := bufio.NewReader(c)
	if resp, err := http.ReadResponse(cbr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	io.WriteString(c, wsHandshake)
	if _, err := http.ReadRequest(ubr); err != nil { // the same, pooled, upstream connection
		t.Fatal(err)
	}
	io.WriteString(up, switched)
	readSwitch(t, cbr)
	send(t, c, up, []byte("before"))
	since, _ := firstSince(a.p.tracker)

	// Bytes in flight both ways when it moves: the upstream's answer is
	// written while the tunnel is parked, the client's too.
	parks := make(chan *Parked, 1)
	a.p.Migrate(parkInto(parks))
	pk := awaitParked(t, parks)
	if pk.Kind != KindTunnel || pk.Listener != "web" || len(pk.Files) != 2 || !pk.StartedAt.Equal(since) || pk.Requests != 2 {
		t.Fatalf("parked %+v, want an http_tunnel of web started at %v with 2 sockets and 2 requests", pk.Handover, since)
	}
	io.WriteString(up, "while parked")
	io.WriteString(c, "client too")
	held, err := b.Adopt(pk.Handover)
	if err != nil {
		t.Fatal(err)
	}
	pk.Moved()
	held.Start()
	waitFor(t, "the old proxy to let go", func() bool { return a.p.Active() == 0 && tunnelGauge(a.reg) == 0 })
	waitFor(t, "the new proxy's tunnel gauge", func() bool { return tunnelGauge(regB) == 1 })
	// The upstream connection is open in the process that holds it.
	waitFor(t, "the old proxy's upstream connection count", func() bool { return openUpstream(a.reg) == 0 })
	if o := openUpstream(regB); o != 1 {
		t.Fatalf("new proxy: %v upstream connections open, want the tunnel's", o)
	}
	if b.Active() != 1 {
		t.Fatalf("after the move: new proxy holds %d connections, want 1", b.Active())
	}
	if got := readN(t, cbr, len("while parked")); got != "while parked" {
		t.Fatalf("client read %q", got)
	}
	if got := readN(t, up, len("client too")); got != "client too" {
		t.Fatalf("upstream read %q", got)
	}
	big := payload(256 << 10)
	send(t, c, up, big)
	send(t, up, c, big)
	if got := regB.Counter("listener.downstream_cx_rx_bytes_total", "", "listener", "web").Value(); got < float64(len(big)) {
		t.Fatalf("new proxy rx = %v, want at least %d", got, len(big))
	}
	halfCloseBothWays(t, c, up)
	if err := b.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if o := openUpstream(regB); o != 0 {
		t.Fatalf("new proxy: %v upstream connections open after the tunnel ended", o)
	}
}

func TestUpgradeTunnelResumesWhenNotMoved(t *testing.T) {
	be := startTCPBackend(t)
	a := startHTTP(t, config.HTTPProxyConfig{}, upgradeRoute(), appCluster(be.addr))
	c, cbr, up := openTunnel(t, a.addr, be, "")
	parks := make(chan *Parked, 1)
	a.p.Migrate(parkInto(parks))
	pk := awaitParked(t, parks)
	io.WriteString(up, "kept")
	pk.Resume()
	if got := readN(t, cbr, 4); got != "kept" {
		t.Fatalf("client read %q", got)
	}
	send(t, c, up, bytes.Repeat([]byte("x"), 64<<10))
	if a.p.Active() != 1 {
		t.Fatalf("%d connections, want the resumed tunnel", a.p.Active())
	}
}

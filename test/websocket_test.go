package test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsBackend is a WebSocket echo server on 127.0.0.1: every message comes
// back as it went, text or binary. It counts the connections it upgraded.
type wsBackend struct {
	ln    net.Listener
	conns atomic.Int64
}

func newWSBackend(t testing.TB) *wsBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &wsBackend{ln: ln}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, http.Header{"X-Backend": {"ws"}})
		if err != nil {
			return // answered with an error status by Upgrade
		}
		b.conns.Add(1)
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return // a close frame is answered by the default close handler
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "plain") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *wsBackend) addr() string { return b.ln.Addr().String() }

func wsDial(t testing.TB, target string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial("ws://"+target+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", target, err)
	}
	if resp.Header.Get("X-Backend") != "ws" {
		t.Fatalf("101 without the backend's fields: %v", resp.Header)
	}
	return c
}

func TestWebSocketEchoThroughProxy(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ws := newWSBackend(t)
	httpPort := freePort(t)
	off := false
	refusing := obj{"match": obj{"prefix": "/no-ws"}, "route": obj{"cluster_name": "ws",
		"upgrade_configs": []obj{{"upgrade_type": "websocket", "enabled": off}}}}
	cfg := mosnConfig(dir+"/uds", p, "", []obj{httpListener("web", addr(httpPort), "r")},
		[]obj{router("r", "ws", refusing)}, []obj{cluster("ws", ws.addr())})
	startMosn(t, "mosn", writeJSON(t, dir, "c.json", cfg), p)

	c := wsDial(t, addr(httpPort))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i, m := range []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello through mosnlite")},
		{websocket.BinaryMessage, bytes.Repeat([]byte{0, 1, 2, 0xff}, 16<<10)},
		{websocket.TextMessage, []byte(strings.Repeat("x", 1<<20))},
		{websocket.BinaryMessage, nil},
	} {
		if err := c.WriteMessage(m.typ, m.data); err != nil {
			t.Fatalf("message %d: write: %v", i, err)
		}
		typ, got, err := c.ReadMessage()
		if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("message %d: echo type %d, %d bytes, %v; want type %d, %d bytes", i, typ, len(got), err, m.typ, len(m.data))
		}
	}
	// A clean close: the backend's close frame comes back through the tunnel.
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after the close frame: %v, want the echoed normal closure", err)
	}
	c.Close()

	// The refusing route answers 403, as Envoy does, and the backend never sees it.
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	_, resp, err := d.Dial("ws://"+addr(httpPort)+"/no-ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade on a refusing route: %v %v, want 403", resp, err)
	}
	if n := ws.conns.Load(); n != 1 {
		t.Fatalf("backend upgraded %d connections, want 1", n)
	}
	waitMetric(t, p, 1, "mosnlite_http_downstream_cx_upgrades_total", `listener="web"`)
	waitMetric(t, p, 0, "mosnlite_http_downstream_cx_upgrades_active", `listener="web"`)
	waitMetric(t, p, 1, "mosnlite_http_downstream_rq_total", `listener="web"`, `status_class="1xx"`)
	waitMetric(t, p, 1, "mosnlite_http_downstream_rq_total", `listener="web"`, `status_class="4xx"`)
}

// wsMessage is message seq of worker: its length varies, so that frames of
// every size cross the upgrades.
func wsMessage(worker, seq int) []byte {
	head := fmt.Sprintf("w%d-%d-", worker, seq)
	return append([]byte(head), bytes.Repeat([]byte{byte('a' + seq%26)}, (seq*37)%1500)...)
}

// wsClients are WebSocket clients that each keep one connection for the
// whole test: a writer sends a message every 5 ms, a reader checks that the
// echoes come back whole and in order. Any read or write error, a close
// frame among them, is a failure; at stop every message sent must have come
// back, then the close handshake ends the connection, on the same local
// address it began with.
type wsClients struct {
	recv [16]atomic.Int64 // echoes checked, by worker
}

func (w *wsClients) progress(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = w.recv[i].Load()
	}
	return out
}

// waitProgress waits until each of n workers has more than min echoes
// beyond before.
func (w *wsClients) waitProgress(t *testing.T, n int, before []int64, min int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < n; i++ {
		for w.recv[i].Load() < before[i]+min {
			if time.Now().After(deadline) {
				t.Fatalf("client %d: %d echoes, want %d more than %d", i, w.recv[i].Load(), min, before[i])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (w *wsClients) worker(target string) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial("ws://"+target+"/ws", nil)
		if err != nil {
			t.fail("client %d: dial: %v", worker, err)
			return
		}
		defer c.Close()
		local := c.UnderlyingConn().LocalAddr().String()
		readErr := make(chan error, 1)
		go func() {
			for seq := 0; ; seq++ {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, msg, err := c.ReadMessage()
				if err != nil {
					readErr <- err
					return
				}
				if want := wsMessage(worker, seq); !bytes.Equal(msg, want) {
					readErr <- fmt.Errorf("echo %d: got %.20q…, want %.20q… (lost or reordered)", seq, msg, want)
					return
				}
				w.recv[worker].Add(1)
			}
		}()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		sent := int64(0)
	send:
		for {
			select {
			case <-stop:
				break send
			case err := <-readErr:
				t.fail("client %d after %d messages: read: %v", worker, sent, err)
				return
			case <-tick.C:
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, wsMessage(worker, int(sent))); err != nil {
				t.fail("client %d message %d: write: %v", worker, sent, err)
				return
			}
			sent++
		}
		deadline := time.Now().Add(10 * time.Second)
		for w.recv[worker].Load() < sent {
			select {
			case err := <-readErr:
				t.fail("client %d: %d of %d echoes, then %v", worker, w.recv[worker].Load(), sent, err)
				return
			default:
			}
			if time.Now().After(deadline) {
				t.fail("client %d: %d of %d echoes", worker, w.recv[worker].Load(), sent)
				return
			}
			time.Sleep(time.Millisecond)
		}
		if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second)); err != nil {
			t.fail("client %d: close: %v", worker, err)
			return
		}
		if err := <-readErr; !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.fail("client %d: after its close frame: %v", worker, err)
			return
		}
		if got := c.UnderlyingConn().LocalAddr().String(); got != local {
			t.fail("client %d: local address %s, then %s", worker, local, got)
			return
		}
		t.ok.Add(1)
	}
}

func TestWebSocketTunnelsAcross10Upgrades(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ws := newWSBackend(t)
	httpPort := freePort(t)
	config := func(i int) string {
		cfg := mosnConfig(dir+"/uds", p, "2s", []obj{httpListener("web", addr(httpPort), "r")},
			[]obj{router("r", "ws")}, []obj{cluster("ws", ws.addr())})
		return writeJSON(t, dir, fmt.Sprintf("c%d.json", i), cfg)
	}
	cur := startMosn(t, "gen1", config(1), p)

	const clients, upgrades = 8, 10
	w := &wsClients{}
	l := newLoad()
	l.run("websocket", clients, w.worker(addr(httpPort)))
	defer l.finish()
	w.waitProgress(t, clients, make([]int64, clients), 20)
	pending, worst := 0, time.Duration(0)
	for i := 2; i <= upgrades+1; i++ {
		before := w.progress(clients)
		old := cur
		var took time.Duration
		cur, took = upgradeTimed(t, old, fmt.Sprintf("gen%d", i), config(i), i)
		worst = max(worst, took)
		if took >= 2*time.Second {
			t.Errorf("upgrade %d: the old process exited %s after its ack: it waited out graceful_timeout", i-1, took)
		}
		s := summary(t, old)
		if s["moved_http_tunnel"] != clients || s["failed_http_tunnel"] != 0 || s["drained_http"] != 0 {
			t.Errorf("upgrade %d: migration summary %v, want %d tunnels moved, none failed or drained", i-1, s, clients)
		}
		pending += s["pending_bytes_moved"]
		// Every client goes on, through the new process.
		w.waitProgress(t, clients, before, 40)
	}
	l.finish()
	tl := l.byName["websocket"]
	t.Logf("%d upgrades, %d clients: %v echoes each, %d bytes moved in flight, slowest old-process exit %s after the ack; %s",
		upgrades, clients, w.progress(clients), pending, worst.Round(time.Millisecond), tl)
	if tl.failed.Load() != 0 || tl.ok.Load() != clients {
		t.Fatalf("clients: %s", tl)
	}
	// One connection each, on both sides, across every generation.
	if n := ws.conns.Load(); n != clients {
		t.Fatalf("backend upgraded %d connections, want %d", n, clients)
	}
	waitMetric(t, p, clients, "mosnlite_listener_downstream_cx_total", `listener="web"`)
	waitMetric(t, p, clients, "mosnlite_http_downstream_cx_upgrades_total", `listener="web"`)
	waitMetric(t, p, clients*upgrades, "mosnlite_server_connections_migrated_total", `listener="web"`, `kind="http_tunnel"`)
	waitMetric(t, p, 0, "mosnlite_server_connection_migrations_failed_total")
	waitMetric(t, p, 0, "mosnlite_http_downstream_cx_upgrades_active")
	waitOnlyListening(t, cur.pid(), ws.addr())
}

// A successor that takes the tunnels and dies before it answers: every
// tunnel resumes in the old process, and its client notices nothing.
func TestWebSocketTunnelsResumeWhenSuccessorDies(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	ws := newWSBackend(t)
	httpPort := freePort(t)
	cfg := mosnConfig(dir+"/uds", p, "30s", []obj{httpListener("web", addr(httpPort), "r")},
		[]obj{router("r", "ws")}, []obj{cluster("ws", ws.addr())})
	old := startMosn(t, "gen1", writeJSON(t, dir, "c1.json", cfg), p)

	const clients = 4
	w := &wsClients{}
	l := newLoad()
	l.run("websocket", clients, w.worker(addr(httpPort)))
	defer l.finish()
	w.waitProgress(t, clients, make([]int64, clients), 20)

	mark := old.out.mark()
	offers := takeOffersAndDie(t, dir+"/uds", []obj{{"listener": "web", "kind": "http"}, {"listener": "web", "kind": "http_tunnel"}})
	sockets := 0
	for _, f := range offers {
		sockets += len(f.fds)
		if !bytes.Contains(f.payload, []byte(`"kind":"http_tunnel"`)) {
			t.Errorf("offer %s, want an http_tunnel", f.payload)
		}
	}
	if len(offers) != clients || sockets != 2*clients {
		t.Fatalf("got %d offers with %d sockets, want %d and %d", len(offers), sockets, clients, 2*clients)
	}

	old.waitLogAfter(mark, `migration: batch failed`, 5*time.Second)
	w.waitProgress(t, clients, w.progress(clients), 40)
	l.finish()
	if tl := l.byName["websocket"]; tl.failed.Load() != 0 || tl.ok.Load() != clients {
		t.Fatalf("clients: %s", tl)
	}
	line := old.waitLogAfter(mark, `connection migration summary`, 10*time.Second)
	for _, want := range []string{"moved_http_tunnel=0", fmt.Sprintf("failed_http_tunnel=%d", clients)} {
		if !strings.Contains(line, want) {
			t.Errorf("summary %q lacks %s", line, want)
		}
	}
	// The tunnels ended with their clients' close handshake: nothing
	// remains, and the old process exits without waiting out its 30 s.
	if code := old.wait(10 * time.Second); code != 0 {
		t.Fatalf("old exited %d", code)
	}
	if n := ws.conns.Load(); n != clients {
		t.Fatalf("backend upgraded %d connections, want %d", n, clients)
	}
}

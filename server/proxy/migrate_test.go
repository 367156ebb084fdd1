package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/conntrack"
	"github.com/mosnlite/mosnlite/service/stats"
)

// tcpBackend accepts connections and hands them to the test.
type tcpBackend struct {
	addr  string
	conns chan net.Conn
}

func startTCPBackend(t *testing.T) *tcpBackend {
	t.Helper()
	l := listen(t)
	b := &tcpBackend{addr: l.Addr().String(), conns: make(chan net.Conn, 8)}
	acceptEach(l, func(c net.Conn) { b.conns <- c })
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case c := <-b.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return b
}

func (b *tcpBackend) accept(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-b.conns:
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c.(*net.TCPConn)
	case <-time.After(5 * time.Second):
		t.Fatal("no upstream connection")
		return nil
	}
}

// newTCPProxy builds a tcp proxy to host that does not serve: it only adopts.
func newTCPProxy(t *testing.T, reg *stats.Registry, host string) *tcpProxy {
	t.Helper()
	m := newManager(t, reg, config.Cluster{Name: "echo", Hosts: []config.Host{{Address: host}}})
	p, err := newTCP(tcpListener("echo", 0), m, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.CloseAll()
		if err := p.Wait(waitCtx(t)); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	return p
}

func parkInto(ch chan *Parked) func(*Parked) { return func(p *Parked) { ch <- p } }

func awaitParked(t *testing.T, ch chan *Parked) *Parked {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no connection parked")
		return nil
	}
}

// send writes msg on from and reads it back on to.
func send(t *testing.T, from, to net.Conn, msg []byte) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := from.Write(msg)
		done <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(to, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(msg), err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("bytes differ after %d bytes", len(msg))
	}
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func waitFDs(t *testing.T, max int) {
	t.Helper()
	waitFor(t, "fds to be closed", func() bool { return fdCount(t) <= max })
}

func counter(reg *stats.Registry, name string) float64 {
	return reg.Counter(name, "", "listener", "tcp-l").Value()
}

func TestTCPSessionMovesToAnotherProxy(t *testing.T) {
	be := startTCPBackend(t)
	regA, regB := stats.New(), stats.New()
	a, addr := startTCP(t, regA, 0, be.addr)
	b := newTCPProxy(t, regB, be.addr)
	c := dial(t, addr)
	up := be.accept(t)
	send(t, c, up, []byte("hello upstream"))
	send(t, up, c, []byte("hello client"))
	since, _ := firstSince(a.tracker)

	parks := make(chan *Parked, 1)
	a.Migrate(parkInto(parks))
	pk := awaitParked(t, parks)
	if pk.Kind != KindTCP || pk.Listener != "tcp-l" || len(pk.Files) != 2 || !pk.StartedAt.Equal(since) {
		t.Fatalf("parked %+v, want a tcp session of tcp-l started at %v with 2 sockets", pk.Handover, since)
	}
	held, err := b.Adopt(pk.Handover)
	if err != nil {
		t.Fatal(err)
	}
	rxA := counter(regA, "listener.downstream_cx_rx_bytes_total")
	pk.Moved()
	held.Start()
	waitFor(t, "the old proxy to let go", func() bool { return a.Active() == 0 })
	if b.Active() != 1 {
		t.Fatalf("new proxy holds %d connections, want 1", b.Active())
	}
	if got, ok := firstSince(b.tracker); !ok || !got.Equal(since) {
		t.Fatalf("connection age in the new proxy: %v, want %v", got, since)
	}
	if g := regA.Gauge("listener.downstream_cx_active", "", "listener", "tcp-l").Value(); g != 0 {
		t.Fatalf("old active gauge %v", g)
	}
	if g := regB.Gauge("listener.downstream_cx_active", "", "listener", "tcp-l").Value(); g != 1 {
		t.Fatalf("new active gauge %v", g)
	}

	// The same connections go on, served by the new proxy only.
	big := payload(1 << 20)
	send(t, c, up, big)
	send(t, up, c, big[:4096])
	if got := counter(regA, "listener.downstream_cx_rx_bytes_total"); got != rxA {
		t.Fatalf("old proxy still counts: rx %v → %v", rxA, got)
	}
	if got := counter(regB, "listener.downstream_cx_rx_bytes_total"); got != float64(len(big)) {
		t.Fatalf("new proxy rx = %v, want %d", got, len(big))
	}
	if got := counter(regB, "tcp.downstream_sessions_total"); got != 0 {
		t.Fatalf("a moved session counted as accepted again: %v", got)
	}
	// Half-close passes through both ways and ends the session.
	halfCloseBothWays(t, c, up)
	if err := b.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func firstSince(tr *conntrack.Tracker) (time.Time, bool) {
	var since time.Time
	var ok bool
	tr.Range(func(c conntrack.Conn, _ conntrack.State) bool {
		since, ok = tr.Since(c)
		return false
	})
	return since, ok
}

// Bytes read but not yet written, both ways, move with the session and
// arrive exactly once, in order. A session adopted with more pending data
// than the sockets can take is paused in the middle of its writes, which
// leaves data pending in both directions; it moves again.
func TestTCPSessionMovesWithPendingBothWays(t *testing.T) {
	be := startTCPBackend(t)
	regA, regB, regC := stats.New(), stats.New(), stats.New()
	a, addr := startTCP(t, regA, 0, be.addr)
	b := newTCPProxy(t, regB, be.addr)
	cp := newTCPProxy(t, regC, be.addr)
	c := dial(t, addr)
	up := be.accept(t)
	send(t, c, up, []byte("x"))
	send(t, up, c, []byte("y"))

	parks := make(chan *Parked, 1)
	a.Migrate(parkInto(parks))
	pk := awaitParked(t, parks)
	toUp, toDown := payload(6<<20), payload(6<<20 + 7)[7:]
	h := pk.Handover
	h.ToUpstream = append(bytes.Clone(h.ToUpstream), toUp...)
	h.ToDownstream = append(bytes.Clone(h.ToDownstream), toDown...)
	wantUp, wantDown := h.ToUpstream, h.ToDownstream
	held, err := b.Adopt(h)
	if err != nil {
		t.Fatal(err)
	}
	pk.Moved()
	held.Start()

	// b writes what the sockets take while nobody reads, then blocks: more
	// is pending than the buffers can hold. Paused then, it stops in the
	// middle of its writes, in both directions.
	waitFor(t, "b to write both ways", func() bool { return queued(t, up) > 0 && queued(t, c) > 0 })
	b.Migrate(parkInto(parks))
	pk2 := awaitParked(t, parks)
	if n, m := len(pk2.ToUpstream), len(pk2.ToDownstream); n == 0 || m == 0 || n == len(wantUp) || m == len(wantDown) {
		t.Fatalf("pending at the pause: %d bytes up, %d down; want part of %d, %d", n, m, len(wantUp), len(wantDown))
	}
	t.Logf("paused with %d bytes pending upstream, %d downstream", len(pk2.ToUpstream), len(pk2.ToDownstream))
	held2, err := cp.Adopt(pk2.Handover)
	if err != nil {
		t.Fatal(err)
	}
	pk2.Moved()
	held2.Start()

	readAll := func(r net.Conn, n int, out chan<- []byte) {
		got := make([]byte, n)
		k, err := io.ReadFull(r, got)
		if err != nil {
			t.Errorf("read %d of %d bytes: %v", k, n, err)
		}
		out <- got[:k]
	}
	gotUp, gotDown := make(chan []byte, 1), make(chan []byte, 1)
	go readAll(up, len(wantUp), gotUp)
	go readAll(c, len(wantDown), gotDown)
	if g := <-gotUp; !bytes.Equal(g, wantUp) {
		t.Fatalf("upstream got %d bytes, want the %d pending, in order", len(g), len(wantUp))
	}
	if g := <-gotDown; !bytes.Equal(g, wantDown) {
		t.Fatalf("client got %d bytes, want the %d pending, in order", len(g), len(wantDown))
	}
	if b.Active() != 0 || cp.Active() != 1 {
		t.Fatalf("active: b=%d c=%d, want 0, 1", b.Active(), cp.Active())
	}
	send(t, c, up, []byte("after"))
	send(t, up, c, []byte("after too"))
	// Each byte written to the client was counted once, in whichever proxy
	// wrote it (counted just after the write, so perhaps a moment after the
	// client read it).
	tx := func() float64 {
		return counter(regA, "listener.downstream_cx_tx_bytes_total") + counter(regB, "listener.downstream_cx_tx_bytes_total") +
			counter(regC, "listener.downstream_cx_tx_bytes_total")
	}
	want := float64(1 + len(wantDown) + len("after too"))
	waitFor(t, "the last write to be counted", func() bool { return tx() >= want })
	if got := tx(); got != want {
		t.Fatalf("tx bytes over three proxies = %v, want %v", got, want)
	}
}

func TestTCPSessionResumesWhenNotMoved(t *testing.T) {
	be := startTCPBackend(t)
	a, addr := startTCP(t, stats.New(), 0, be.addr)
	c := dial(t, addr)
	up := be.accept(t)
	send(t, c, up, []byte("before"))
	base := fdCount(t)

	parks := make(chan *Parked, 2)
	a.Migrate(parkInto(parks))
	pk := awaitParked(t, parks)
	if fdCount(t) != base+2 {
		t.Fatalf("parked session holds %d extra fds, want its 2 duplicates", fdCount(t)-base)
	}
	// Data sent during the pause waits in the sockets.
	if _, err := c.Write([]byte("during")); err != nil {
		t.Fatal(err)
	}
	pk.Resume()
	waitFDs(t, base)
	got := make([]byte, len("during"))
	if _, err := io.ReadFull(up, got); err != nil || string(got) != "during" {
		t.Fatalf("after resume: %q %v", got, err)
	}
	send(t, up, c, []byte("still here"))
	// Once not moved, it stays: a second request to move does not pause it
	// (nobody would decide, and this exchange would hang).
	a.Migrate(parkInto(parks))
	send(t, c, up, payload(256<<10))
	send(t, up, c, payload(256<<10))
	if len(parks) != 0 {
		t.Fatal("a resumed session parked again")
	}
	if a.Active() != 1 {
		t.Fatalf("Active = %d", a.Active())
	}
}

func TestTCPHalfClosedSessionStays(t *testing.T) {
	be := startTCPBackend(t)
	a, addr := startTCP(t, stats.New(), 0, be.addr)
	c := dial(t, addr)
	up := be.accept(t)
	send(t, c, up, []byte("request"))
	c.CloseWrite()
	if _, err := up.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("upstream: %v, want EOF", err)
	}
	parks := make(chan *Parked, 1)
	a.Migrate(parkInto(parks))
	// The other direction still works, and the session ends here.
	send(t, up, c, []byte("response"))
	up.Close()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client: %v, want EOF", err)
	}
	if err := a.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if len(parks) != 0 {
		t.Fatal("a half-closed session was offered")
	}
}

// A request is in flight when the move is asked for; the next one, sent
// pipelined with it, is in the proxy's buffer when the connection reaches
// its boundary. The connection moves with it, and the new proxy answers it.
func TestHTTPConnMovesWithPipelinedRequest(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "answer "+r.URL.Path)
	})
	a := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	b := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, a.addr)
	br := bufio.NewReader(c)
	req2 := "GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"+req2); err != nil {
		t.Fatal(err)
	}
	<-arrived
	parks := make(chan *Parked, 1)
	a.p.Migrate(parkInto(parks))
	if len(parks) != 0 {
		t.Fatal("parked in the middle of a request")
	}
	close(release)
	expectAnswer(t, br, "answer /slow", false)

	pk := awaitParked(t, parks)
	if pk.Kind != KindHTTP || len(pk.Files) != 1 || string(pk.Buffered) != req2 || pk.Requests != 1 {
		t.Fatalf("parked: kind %s, %d sockets, buffered %q, %d requests; want http, 1, the pipelined request, 1",
			pk.Kind, len(pk.Files), pk.Buffered, pk.Requests)
	}
	held, err := b.p.Adopt(pk.Handover)
	if err != nil {
		t.Fatal(err)
	}
	pk.Moved()
	held.Start()
	expectAnswer(t, br, "answer /second", false)
	waitFor(t, "the old proxy to let go", func() bool { return a.p.Active() == 0 })
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
		expectAnswer(t, br, "answer /third", false)
	}
	if a.requests("app", "2xx") != 1 || b.requests("app", "2xx") != 4 {
		t.Fatalf("requests: old %v, new %v; want 1, 4", a.requests("app", "2xx"), b.requests("app", "2xx"))
	}
	// The buffered bytes were counted where they were read, once.
	rxA := a.reg.Counter("listener.downstream_cx_rx_bytes_total", "", "listener", "web").Value()
	rxB := b.reg.Counter("listener.downstream_cx_rx_bytes_total", "", "listener", "web").Value()
	if want := float64(len("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n") + len(req2) + 3*len("GET /third HTTP/1.1\r\nHost: a\r\n\r\n")); rxA+rxB != want {
		t.Fatalf("rx bytes old %v + new %v, want %v in all", rxA, rxB, want)
	}
	if b.downstreamConns() != 0 {
		t.Fatal("a moved connection counted as accepted again")
	}
}

func expectAnswer(t *testing.T, br *bufio.Reader, body string, wantClose bool) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("want %q: %v", body, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != body || resp.Close != wantClose {
		t.Fatalf("got %d %q close=%v, want 200 %q close=%v", resp.StatusCode, b, resp.Close, body, wantClose)
	}
}

func TestHTTPIdleConnMovesAtOnceAndResumedOneDrains(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	a := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	clients := []*rawClient{newRawClient(t, a.addr), newRawClient(t, a.addr)}
	for _, k := range clients {
		k.get(t, "/", "ok", false)
	}
	base := fdCount(t)
	parks := make(chan *Parked, 2)
	a.p.Migrate(parkInto(parks))
	p1, p2 := awaitParked(t, parks), awaitParked(t, parks)
	if len(p1.Buffered)+len(p2.Buffered) != 0 {
		t.Fatal("idle connections with buffered bytes")
	}
	// Both stay: they answer the next request, with Connection: close.
	p1.Resume()
	p2.Resume()
	waitFDs(t, base)
	for _, k := range clients {
		k.get(t, "/", "ok", true)
		expectEOF(t, k.br)
	}
	if err := a.p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// A draining connection that was to move (the migration failed) closes at
// its boundary instead: Drain overrides Migrate.
func TestHTTPDrainOverridesMigrate(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	})
	a := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr()))
	c := dial(t, a.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	parks := make(chan *Parked, 1)
	a.p.Migrate(parkInto(parks))
	a.p.Drain()
	close(release)
	expectAnswer(t, br, "ok", true)
	expectEOF(t, br)
	if len(parks) != 0 {
		t.Fatal("a drained connection parked")
	}
}

func TestAdoptChecksKindAndSockets(t *testing.T) {
	be := startTCPBackend(t)
	tp := newTCPProxy(t, stats.New(), be.addr)
	hp := startHTTP(t, config.HTTPProxyConfig{}, singleRoute(0), appCluster(be.addr))
	f1, f2 := socketFile(t), socketFile(t)
	base := fdCount(t)
	for _, tc := range []struct {
		m    Migrator
		h    Handover
		want string
	}{
		{tp, Handover{Kind: KindHTTP, Files: []*os.File{f1}}, "cannot take"},
		{tp, Handover{Kind: KindTCP, Files: []*os.File{f1}}, "needs 2 sockets"},
		{hp.p, Handover{Kind: KindTCP, Files: []*os.File{f1, f2}}, "cannot take"},
		{hp.p, Handover{Kind: KindHTTP, Files: []*os.File{f1, f2}}, "needs 1 socket"},
		{hp.p, Handover{Kind: KindHTTP, Files: []*os.File{nil}}, "no downstream socket"},
	} {
		if _, err := tc.m.Adopt(tc.h); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Adopt(%s, %d files) = %v, want %q", tc.h.Kind, len(tc.h.Files), err, tc.want)
		}
	}
	// Adopted, then dropped: only our copies go.
	held, err := tp.Adopt(Handover{Kind: KindTCP, Files: []*os.File{f1, f2}})
	if err != nil {
		t.Fatal(err)
	}
	held.Drop()
	waitFDs(t, base)
}

// queued is how many bytes wait unread in c's receive queue.
func queued(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	if ierr != nil {
		t.Fatal(ierr)
	}
	return n
}

// socketFile returns a duplicate of one end of a fresh TCP connection.
func socketFile(t *testing.T) *os.File {
	t.Helper()
	l := listen(t)
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	f, err := dupConn(c, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

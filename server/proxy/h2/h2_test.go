package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serveH2 runs our server on a fresh listener; every stream goes to h.
func serveH2(t *testing.T, cfg Config, h func(*Stream)) (addr string, conns chan *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = make(chan *Conn, 64)
	var wg sync.WaitGroup
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := NewServer(nc, nil, cfg, h)
			conns <- c
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.Serve()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
				continue
			default:
			}
			break
		}
		wg.Wait()
	})
	return ln.Addr().String(), conns
}

// goClient is x/net's HTTP/2 client over plain TCP (h2c, prior knowledge).
func goClient() *http.Client { return goClientStrict(false) }

// goClientStrict with strict keeps to one connection at the server's
// concurrency limit instead of opening more.
func goClientStrict(strict bool) *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP:                  true,
		StrictMaxConcurrentStreams: strict,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, Timeout: 20 * time.Second}
}

func field(fs []hpack.HeaderField, name string) string {
	for _, f := range fs {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// echoHandler answers with the request body, its sha256 in a trailer and
// the request's path in a header.
func echoHandler(st *Stream) {
	body, err := io.ReadAll(st)
	if err != nil {
		st.Reset(http2.ErrCodeInternal)
		return
	}
	sum := sha256.Sum256(body)
	if err := st.WriteHeader([]hpack.HeaderField{
		{Name: ":status", Value: "200"}, {Name: "x-path", Value: field(st.Header(), ":path")},
		{Name: "trailer", Value: "x-sum"},
	}, false); err != nil {
		return
	}
	if _, err := st.Write(body); err != nil {
		return
	}
	_ = st.WriteTrailer([]hpack.HeaderField{{Name: "x-sum", Value: fmt.Sprintf("%x", sum)}})
}

func TestServerEchoWithGoClient(t *testing.T) {
	addr, _ := serveH2(t, Config{StreamWindow: 65535, ConnWindow: 65535}, echoHandler)
	cl := goClient()
	for _, n := range []int{0, 1, 70000, 3 << 20} {
		body := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		req, _ := http.NewRequest("POST", "http://"+addr+"/echo", bytes.NewReader(body))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: echo of %d bytes, err %v", n, len(got), err)
		}
		if resp.Header.Get("x-path") != "/echo" || resp.Trailer.Get("x-sum") != fmt.Sprintf("%x", sha256.Sum256(body)) {
			t.Fatalf("%d bytes: header %v trailer %v", n, resp.Header, resp.Trailer)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("proto %s", resp.Proto)
		}
	}
}

// TestServerConcurrencyLimitWithGoClient: no connection ever runs more
// handlers at once than it advertises, and a Go client that opened more
// streams than that before it read our SETTINGS (it assumes 100) is served,
// not refused. (x/net's StrictMaxConcurrentStreams client stalls even
// against x/net's own server, so the client here may open more
// connections; the limit is per connection.)
func TestServerConcurrencyLimitWithGoClient(t *testing.T) {
	var mu sync.Mutex
	active := map[*Conn]int{}
	peak := 0
	addr, _ := serveH2(t, Config{MaxConcurrentStreams: 4}, func(st *Stream) {
		mu.Lock()
		active[st.c]++
		peak = max(peak, active[st.c])
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		active[st.c]--
		mu.Unlock()
		_ = st.WriteHeader([]hpack.HeaderField{{Name: ":status", Value: "204"}}, true)
	})
	cl := goClient()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get("http://" + addr + "/")
			if err != nil || resp.StatusCode != 204 {
				t.Logf("request: %v", err)
				failed.Add(1)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if peak > 4 || peak < 2 {
		t.Fatalf("peak concurrent handlers on one connection %d, want 2..4", peak)
	}
}

// rawClient speaks frames directly, to see exactly what the server sends.
type rawClient struct {
	t    *testing.T
	wmu  sync.Mutex // the framer's writes
	nc   net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	ebuf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.ebuf)
	if _, err := io.WriteString(nc, ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server speaks first: its SETTINGS.
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("server SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			rc.write(func() error { return rc.fr.WriteSettingsAck() })
			return rc
		}
	}
}

func (rc *rawClient) write(fn func() error) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_ = fn()
}

func (rc *rawClient) headers(id uint32, end bool, fields ...string) {
	rc.t.Helper()
	rc.ebuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = rc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	rc.write(func() error {
		return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.ebuf.Bytes(), EndStream: end, EndHeaders: true})
	})
}

func (rc *rawClient) get(id uint32, path string) {
	rc.headers(id, true, ":method", "GET", ":scheme", "http", ":authority", "t", ":path", path)
}

// next reads the next frame that is not SETTINGS, WINDOW_UPDATE or a PING
// ack, answering SETTINGS (and PINGs when ackPings).
func (rc *rawClient) next(ackPings bool) http2.Frame {
	rc.t.Helper()
	for {
		_ = rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				rc.write(func() error { return rc.fr.WriteSettingsAck() })
			}
			continue
		case *http2.WindowUpdateFrame:
			continue
		case *http2.PingFrame:
			if ackPings && !f.IsAck() {
				rc.write(func() error { return rc.fr.WritePing(true, f.Data) })
			}
		}
		return f
	}
}

func TestShutdownTwoGoAwaysAroundAPing(t *testing.T) {
	release := make(chan struct{})
	addr, conns := serveH2(t, Config{}, func(st *Stream) {
		<-release
		_ = st.WriteHeader([]hpack.HeaderField{{Name: ":status", Value: "200"}}, false)
		_, _ = st.WriteData([]byte("done"), true)
	})
	rc := dialRaw(t, addr)
	rc.get(1, "/long")
	c := <-conns
	waitStreams(t, c, 1)
	c.Shutdown()

	f := rc.next(false)
	ga, ok := f.(*http2.GoAwayFrame)
	if !ok || ga.LastStreamID != maxStreamID || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("first frame after Shutdown: %v, want GOAWAY with the maximum stream id", f)
	}
	f = rc.next(false)
	ping, ok := f.(*http2.PingFrame)
	if !ok || ping.IsAck() {
		t.Fatalf("then %v, want a PING", f)
	}
	// A stream opened before the client saw the GOAWAY is still served.
	rc.get(3, "/raced")
	rc.write(func() error { return rc.fr.WritePing(true, ping.Data) })
	f = rc.next(false)
	ga, ok = f.(*http2.GoAwayFrame)
	if !ok || ga.LastStreamID != 3 {
		t.Fatalf("after the PING ack: %v, want the final GOAWAY with last stream 3", f)
	}
	// A stream after the final GOAWAY is ignored.
	rc.get(5, "/late")
	close(release)
	got := map[uint32]bool{}
	for len(got) < 2 {
		switch f := rc.next(false).(type) {
		case *http2.DataFrame:
			if f.StreamEnded() {
				got[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
	}
	if !got[1] || !got[3] {
		t.Fatalf("streams answered: %v, want 1 and 3", got)
	}
	// Then the server closes: EOF, no reset.
	_ = rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after the last stream: %v, want EOF", err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 5 {
			t.Fatalf("stream 5, opened after the final GOAWAY, was answered")
		}
	}
}

func waitStreams(t *testing.T, c *Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Streams() < n {
		if time.Now().After(deadline) {
			t.Fatalf("connection has %d streams, want %d", c.Streams(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdownWithoutPingAckStillFinishes(t *testing.T) {
	addr, conns := serveH2(t, Config{PingTimeout: 50 * time.Millisecond}, echoHandler)
	rc := dialRaw(t, addr)
	c := <-conns
	c.Shutdown()
	var last *http2.GoAwayFrame
	for last == nil {
		f := rc.next(false)
		if ga, ok := f.(*http2.GoAwayFrame); ok && ga.LastStreamID != maxStreamID {
			last = ga
		}
	}
	if last.LastStreamID != 0 {
		t.Fatalf("final GOAWAY last stream %d, want 0", last.LastStreamID)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("an idle connection did not close after its final GOAWAY")
	}
}

func TestGoClientMovesToANewConnectionOnShutdown(t *testing.T) {
	var served atomic.Int32
	addr, conns := serveH2(t, Config{}, func(st *Stream) {
		served.Add(1)
		_ = st.WriteHeader([]hpack.HeaderField{{Name: ":status", Value: "200"}}, false)
		_, _ = st.WriteData([]byte("ok"), true)
	})
	cl := goClient()
	stop := make(chan struct{})
	var failed, done atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := cl.Get("http://" + addr + "/")
				if err != nil {
					failed.Add(1)
					t.Logf("request: %v", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done.Add(1)
			}
		}()
	}
	var drained []*Conn
	for i := 0; i < 5; i++ {
		c := <-conns
		waitServed(t, &served, served.Load()+20)
		c.Shutdown()
		drained = append(drained, c)
	}
	waitServed(t, &served, served.Load()+20)
	close(stop)
	wg.Wait()
	for _, c := range drained {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a drained connection did not close")
		}
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across 5 shutdowns", failed.Load(), done.Load()+failed.Load())
	}
}

func waitServed(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("served %d, want %d", n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHeaderListTooLarge(t *testing.T) {
	addr, _ := serveH2(t, Config{MaxHeaderListSize: 1024, MaxHeaderCount: 5}, func(st *Stream) {
		status := "200"
		if st.TooLarge() {
			status = "431"
		}
		_ = st.WriteHeader([]hpack.HeaderField{{Name: ":status", Value: status}}, true)
	})
	rc := dialRaw(t, addr)
	req := []string{":method", "GET", ":scheme", "http", ":authority", "t", ":path", "/"}
	for i, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"small", []string{"a", "b"}, "200"},
		{"big value", []string{"a", strings.Repeat("x", 1000)}, "431"},
		{"many", []string{"a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6"}, "431"},
		{"small again", []string{"a", "b"}, "200"},
	} {
		id := uint32(2*i + 1)
		rc.headers(id, true, append(req, tc.extra...)...)
		for {
			f := rc.next(true)
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
				if got := h.PseudoValue("status"); got != tc.want {
					t.Fatalf("%s: %s, want %s", tc.name, got, tc.want)
				}
				break
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				t.Fatalf("%s: GOAWAY", tc.name)
			}
		}
	}
}

func TestRapidResetIsCalmed(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	addr, _ := serveH2(t, Config{MaxConcurrentStreams: 2}, func(st *Stream) {
		select {
		case <-block:
		case <-st.Aborted():
		}
		// Reset handlers linger, as a slow upstream would keep them.
		<-block
	})
	rc := dialRaw(t, addr)
	go func() {
		for id := uint32(1); id < 400; id += 2 {
			rc.get(id, "/")
			rc.write(func() error { return rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
		}
	}()
	for {
		f := rc.next(true)
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
			}
			return
		}
	}
}

func TestFlowControlViolationIsAnError(t *testing.T) {
	addr, _ := serveH2(t, Config{StreamWindow: 65535, ConnWindow: 1 << 20}, func(st *Stream) {
		<-st.Aborted()
	})
	rc := dialRaw(t, addr)
	rc.headers(1, false, ":method", "POST", ":scheme", "http", ":authority", "t", ":path", "/")
	chunk := make([]byte, 16384)
	for i := 0; i < 5; i++ { // 80 KiB into a 64 KiB stream window
		rc.write(func() error { return rc.fr.WriteData(1, false, chunk) })
	}
	for {
		f := rc.next(true)
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			if r.StreamID != 1 || r.ErrCode != http2.ErrCodeFlowControl {
				t.Fatalf("%v, want RST_STREAM FLOW_CONTROL_ERROR on stream 1", r)
			}
			return
		}
	}
}

func TestIdleTimeoutSaysGoAway(t *testing.T) {
	addr, conns := serveH2(t, Config{IdleTimeout: 50 * time.Millisecond}, echoHandler)
	rc := dialRaw(t, addr)
	f := rc.next(true)
	if ga, ok := f.(*http2.GoAwayFrame); !ok || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("%v, want GOAWAY NO_ERROR after the idle timeout", f)
	}
	c := <-conns
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection not closed")
	}
}

// serveGo runs x/net's HTTP/2 server (h2c prior knowledge) with h.
func serveGo(t *testing.T, h http.Handler, maxStreams uint32) (addr string, goAway func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http2.Server{MaxConcurrentStreams: maxStreams}
	hs := &http.Server{Handler: h}
	if err := http2.ConfigureServer(hs, srv); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var live []net.Conn
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			live = append(live, nc)
			mu.Unlock()
			go srv.ServeConn(nc, &http2.ServeConnOpts{BaseConfig: hs, Handler: h})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range live {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), func() {
		// Server.Shutdown is how x/net's server says GOAWAY.
		_ = hs.Shutdown(context.Background())
	}
}

func openClient(t *testing.T, addr string, cfg Config) *Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func request(method, path string) []hpack.HeaderField {
	return []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "up"}, {Name: ":path", Value: path}, {Name: "te", Value: "trailers"}}
}

func TestClientAgainstGoServer(t *testing.T) {
	addr, _ := serveGo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("X-Len", fmt.Sprint(len(body)))
		w.WriteHeader(200)
		_, _ = w.Write(body)
		w.Header().Set("Grpc-Status", "0")
	}), 0)
	c := openClient(t, addr, Config{StreamWindow: 65535})
	for _, n := range []int{0, 100, 1 << 20} {
		if !c.Reserve() {
			t.Fatal("no room on a fresh connection")
		}
		body := bytes.Repeat([]byte{'z'}, n)
		st, err := c.OpenStream(request("POST", "/x"), n == 0, false)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if n > 0 {
				_, _ = st.WriteData(body, true)
			}
		}()
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, err := st.ReadHeader()
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		got, err := io.ReadAll(st)
		if err != nil || len(got) != n || field(h, ":status") != "200" || field(h, "x-len") != fmt.Sprint(n) {
			t.Fatalf("%d: status %q x-len %q, %d bytes back, %v", n, field(h, ":status"), field(h, "x-len"), len(got), err)
		}
		if field(st.Trailer(), "grpc-status") != "0" {
			t.Fatalf("%d: trailer %v", n, st.Trailer())
		}
	}
	waitIdle(t, c)
}

func waitIdle(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !c.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("client connection still has streams")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClientRespectsPeerConcurrencyAndGoAway(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 3)
	addr, goAway := serveGo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
		w.WriteHeader(204)
	}), 3)
	c := openClient(t, addr, Config{})
	// The server's SETTINGS arrive with its first frames; wait for them.
	var streams []*Stream
	deadline := time.Now().Add(5 * time.Second)
	for len(streams) < 3 {
		if !c.Reserve() {
			t.Fatal("no room for the first three streams")
		}
		st, err := c.OpenStream(request("GET", "/"), true, false)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	for {
		c.mu.Lock()
		max := c.peerMaxStreams
		c.mu.Unlock()
		if max == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer max streams %d, want 3", max)
		}
		time.Sleep(time.Millisecond)
	}
	if c.Reserve() {
		t.Fatal("a fourth stream was reserved over the peer's limit of 3")
	}
	// x/net's server says one GOAWAY with the last stream it has processed:
	// it must have seen all three first, or it refuses the others.
	for range 3 {
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the three streams did not reach the server's handler")
		}
	}
	go goAway()
	for !c.Gone() {
		if time.Now().After(deadline) {
			t.Fatal("GOAWAY not seen")
		}
		time.Sleep(time.Millisecond)
	}
	close(block)
	for _, st := range streams {
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := st.ReadHeader()
		if err != nil || field(h, ":status") != "204" {
			t.Fatalf("stream %d after GOAWAY: %v %v", st.ID(), h, err)
		}
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client connection did not close after GOAWAY and its last stream")
	}
}

func TestClientStreamRefusedByGoAwayIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		fr := http2.NewFramer(nc, nc)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		pre := make([]byte, len(ClientPreface))
		_, _ = io.ReadFull(nc, pre)
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				_ = fr.WriteGoAway(h.StreamID-1, http2.ErrCodeNo, nil)
			}
		}
	}()
	c := openClient(t, ln.Addr().String(), Config{})
	c.Reserve()
	st, err := c.OpenStream(request("GET", "/"), true, false)
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.ReadHeader(); !errors.Is(err, ErrRefused) {
		t.Fatalf("ReadHeader: %v, want ErrRefused", err)
	}
	if c.Reserve() {
		t.Fatal("a connection going away gave room for a new stream")
	}
}

func TestOurClientAndServerTogether(t *testing.T) {
	addr, _ := serveH2(t, Config{StreamWindow: 65535, ConnWindow: 65535}, echoHandler)
	c := openClient(t, addr, Config{StreamWindow: 65535, ConnWindow: 65535})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !c.Reserve() {
				time.Sleep(time.Millisecond)
			}
			body := bytes.Repeat([]byte{byte(i)}, 100000+i)
			st, err := c.OpenStream(request("POST", fmt.Sprintf("/%d", i)), false, false)
			if err != nil {
				errs <- err
				return
			}
			go func() { _, _ = st.WriteData(body, true) }()
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			h, err := st.ReadHeader()
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(st)
			if err != nil || !bytes.Equal(got, body) || field(h, "x-path") != fmt.Sprintf("/%d", i) ||
				field(st.Trailer(), "x-sum") != fmt.Sprintf("%x", sha256.Sum256(body)) {
				errs <- fmt.Errorf("stream %d: %d bytes, %v, %v %v", i, len(got), err, h, st.Trailer())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

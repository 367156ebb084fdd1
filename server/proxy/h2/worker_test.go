package h2

import (
	"bytes"
	"io"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// goid is the calling goroutine's number, from its stack header.
func goid() uint64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := bytes.Fields(b[:n])
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// Streams that follow one another on a connection run on the worker the
// first one started, not a goroutine each; concurrent ones on as many
// workers as run at once; and once the connection ends no worker is left.
func TestHandlersRunOnReusedWorkers(t *testing.T) {
	var mu sync.Mutex
	seen := map[uint64]int{}
	release := make(chan struct{})
	h := func(st *Stream) {
		mu.Lock()
		seen[goid()]++
		mu.Unlock()
		if field(st.Header(), ":path") == "/wait" {
			<-release
		}
		_ = st.WriteHeader([]hpack.HeaderField{{Name: ":status", Value: "200"}}, true)
	}
	// Workers linger far longer than the test: only the connection's end
	// can end them.
	addr, conns := serveH2(t, Config{HandlerLinger: time.Hour}, h)
	cl := goClientStrict(true)
	get := func(path string) {
		resp, err := cl.Get("http://" + addr + path)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 20 {
		get("/")
	}
	mu.Lock()
	// A stream that arrives while the last handler is still on its way
	// out (its answer is sent before it returns) gets a worker of its own;
	// that is rare, but it happens.
	if len(seen) > 3 {
		t.Errorf("20 streams one after another ran on %d goroutines, want at most 3", len(seen))
	}
	clear(seen)
	mu.Unlock()

	// Three at once: three workers.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); get("/wait") }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, k := range seen {
			n += k
		}
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 concurrent handlers started", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	mu.Lock()
	if len(seen) != 3 {
		t.Errorf("3 concurrent streams ran on %d goroutines, want 3 (one each)", len(seen))
	}
	mu.Unlock()

	// The connection ends: its workers end with it (not after the linger).
	cl.CloseIdleConnections()
	c := <-conns
	c.Close()
	<-c.Done()
	deadline = time.Now().Add(10 * time.Second)
	for workers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers left 10 s after their connection ended", workers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// workers counts the goroutines in (*Conn).worker.
func workers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("h2.(*Conn).worker("))
}

// WriteResponse sends head and body whole: in one write when the windows
// take the body, and by the ordinary path when they do not (a body larger
// than the stream window waits for the client's window updates).
func TestWriteResponseWholeAndOverTheWindow(t *testing.T) {
	small := bytes.Repeat([]byte("s"), 100)
	large := bytes.Repeat([]byte("L"), 100_000) // over the 65,535-byte initial window
	addr, _ := serveH2(t, Config{}, func(st *Stream) {
		body := small
		if field(st.Header(), ":path") == "/large" {
			body = large
		}
		_ = st.WriteResponse([]hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "x-len", Value: strconv.Itoa(len(body))}}, body)
	})
	cl := goClient()
	for path, want := range map[string][]byte{"/small": small, "/large": large} {
		resp, err := cl.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, want) || resp.StatusCode != 200 || resp.Header.Get("x-len") != strconv.Itoa(len(want)) {
			t.Fatalf("%s: status %d, x-len %q, %d bytes (want %d), err %v", path, resp.StatusCode, resp.Header.Get("x-len"), len(got), len(want), err)
		}
	}
}

// The work channel's size does not follow the concurrency limit (which
// may be as high as 2³¹−1): with a limit of 2²⁴ a connection's first idle
// worker makes a channel of maxHandoffs, not 128 MiB of one.
func TestWorkChannelIsBounded(t *testing.T) {
	addr, conns := serveH2(t, Config{MaxConcurrentStreams: 1 << 24, HandlerLinger: time.Hour}, func(st *Stream) {
		_ = st.WriteHeader([]hpack.HeaderField{{Name: ":status", Value: "200"}}, true)
	})
	cl := goClientStrict(true)
	resp, err := cl.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c := <-conns
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		idle, size := c.idleWorkers, cap(c.work)
		c.mu.Unlock()
		if idle == 1 {
			if size != maxHandoffs {
				t.Fatalf("work channel of %d, want %d", size, maxHandoffs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers after the stream, want 1", idle)
		}
		time.Sleep(5 * time.Millisecond)
	}
	conns <- c // serveH2's cleanup closes it
}

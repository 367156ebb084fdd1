package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// serve runs s on l and returns Serve's result channel.
func serve(s *Server, l net.Listener) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Serve(l) }()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func TestServeReturnsNilWhenListenerClosed(t *testing.T) {
	l := listen(t)
	s := NewServer("admin", okHandler(), nil)
	done := serve(s, l)
	c := &http.Client{Timeout: 5 * time.Second}
	if body := get(t, c, "http://"+l.Addr().String()+"/"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	l.Close() // someone else stops accepting, as on upgrade
	if err := waitErr(t, done, "Serve"); err != nil {
		t.Errorf("Serve after listener close = %v, want nil", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after listener close = %v, want nil", err)
	}
	// Serving again after Shutdown is a clean no-op.
	if err := s.Serve(listen(t)); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
}

func TestShutdownWaitsForInFlightRequest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	l := listen(t)
	addr := l.Addr().String()
	s := NewServer("admin", h, nil)
	served := serve(s, l)

	type result struct {
		body  string
		close bool // the server said Connection: close
		err   error
	}
	got := make(chan result, 1)
	go func() {
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		got <- result{body: string(b), close: res.Close, err: err}
	}()
	<-entered

	l.Close() // the listener goes first, closed by its owner
	if err := waitErr(t, served, "Serve"); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond): // asserting an absence: it must still be waiting
	}
	close(release)
	select {
	case r := <-got:
		if r.err != nil || r.body != "done" || !r.close {
			t.Errorf("in-flight request: body %q close %v err %v; want done, Connection: close, nil", r.body, r.close, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request did not finish")
	}
	if err := waitErr(t, shut, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestShutdownClosesIdleKeepAlive(t *testing.T) {
	l := listen(t)
	s := NewServer("metrics", okHandler(), nil)
	served := serve(s, l)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.Close {
		t.Fatal("server should have kept the connection alive")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	// The idle keep-alive connection is closed: the next read sees EOF, not a timeout.
	if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("read after Shutdown = %v, want EOF", err)
	}
	if err := waitErr(t, served, "Serve"); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
}

func TestCloseCutsConnections(t *testing.T) {
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // only the connection's end frees it
	})
	l := listen(t)
	s := NewServer("pprof", h, nil)
	served := serve(s, l)
	errc := make(chan error, 1)
	go func() {
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + l.Addr().String() + "/")
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-entered
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := waitErr(t, errc, "request"); err == nil {
		t.Error("the request should fail when Close cuts its connection")
	}
	if err := waitErr(t, served, "Serve"); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}

// failingListener fails Accept with a permanent error.
type failingListener struct{ net.Listener }

func (failingListener) Accept() (net.Conn, error) { return nil, errors.New("accept exploded") }

func TestServeReportsRealAcceptErrors(t *testing.T) {
	l := listen(t)
	defer l.Close()
	err := NewServer("admin", okHandler(), nil).Serve(failingListener{l})
	if err == nil || !strings.Contains(err.Error(), "accept exploded") || !strings.Contains(err.Error(), "admin") {
		t.Errorf("Serve = %v, want an error naming the server and the cause", err)
	}
}

// A client that connected before the stop but whose request arrives after it
// began gets an answer (with Connection: close), not an EOF: net/http's own
// Shutdown would drop it.
func TestShutdownAnswersRequestReadAfterItBegan(t *testing.T) {
	l := listen(t)
	s := NewServer("metrics", okHandler(), nil)
	done := serve(s, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.conns.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("connection not accepted")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	if err := waitErr(t, done, "Serve"); err != nil { // the listener is closed: the stop began
		t.Fatalf("Serve: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request sent after the stop began: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want 200 ok with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

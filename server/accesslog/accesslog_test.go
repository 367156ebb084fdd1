package accesslog

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func record(t *testing.T) *proxy.RequestInfo {
	t.Helper()
	var req http1.Request
	head := []byte("GET /a/b?x=1&y=two HTTP/1.1\r\nHost: example.com\r\nX-Req: abc\r\nCookie: k=v; s=w\r\n\r\n")
	if err := http1.ParseRequest(head, &req, 100); err != nil {
		t.Fatal(err)
	}
	return &proxy.RequestInfo{
		Listener: "ingress", Start: time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.Local), Duration: 1500 * time.Microsecond,
		Request: &req, HeadBytes: len(head), BytesReceived: 7, BytesSent: 42, Status: 201, Cluster: "app",
		Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, Local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2045},
		ConnID: 9, Flags: proxy.FlagUpstreamConnectFail,
	}
}

// A format of MOSN's variables renders each from the record, "-" where
// there is none.
func TestFormatRendersMOSNVariables(t *testing.T) {
	f, err := Compile("%start_time% %request_method% %request_path% %request_arg_y% %Http1_request_header_X-Req% " +
		"%cookie_s% %response_code% %bytes_sent% %bytes_received% %duration% %downstream_remote_address% " +
		"%listener_port% %upstream_cluster% %upstream_host% %connection_id% %response_flag% %request_header_absent% \\%")
	if err != nil {
		t.Fatal(err)
	}
	got := string(f.Append(nil, record(t)))
	want := "2026/01/02 03:04:05.006 GET /a/b two abc w 201 42 7 1.5ms 127.0.0.1:5555 2045 app - 9 true - \\%"
	if got != want {
		t.Fatalf("line\n got %q\nwant %q", got, want)
	}
	if _, err := Compile("%no_such_variable%"); err == nil {
		t.Fatal("an unknown variable compiled")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Lines wait in memory until a flush, go to the file whole, and a reopen
// (after a rotation) writes the old file's lines there and the next ones
// to a new file at the path; Close writes what is left.
func TestFileFlushReopenClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "access.log")
	w, err := OpenFile(path, nil, FileOptions{FlushInterval: time.Hour}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	line := func(s string) { w.Line(func(b []byte) []byte { return append(b, s...) }) }
	line("one")
	if got := readFile(t, path); got != "" {
		t.Fatalf("written before a flush: %q", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	line("two")
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	line("three")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	line("after close")
	if got := readFile(t, rotated); got != "one\ntwo\n" {
		t.Fatalf("rotated file %q", got)
	}
	if got := readFile(t, path); got != "three\n" {
		t.Fatalf("new file %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// The buffer is bounded: past its limit lines are dropped, not waited for.
func TestFileDropsPastItsLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	w, err := OpenFile(path, nil, FileOptions{FlushInterval: time.Hour, Limit: 100}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		w.Line(func(b []byte) []byte { return fmt.Appendf(b, "line %02d", i) }) // 8 bytes each
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if n := strings.Count(got, "\n"); n != 12 || !strings.HasPrefix(got, "line 00\n") || !strings.HasSuffix(got, "line 11\n") {
		t.Fatalf("kept %d lines: %q", n, got)
	}
}

// Two writers appending to one path (two generations of an upgrade) keep
// every line whole.
func TestTwoWritersAppendWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	const n = 2000
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		w, err := OpenFile(path, nil, FileOptions{FlushInterval: time.Millisecond}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				w.Line(func(b []byte) []byte { return fmt.Appendf(b, "gen%d %06d %s", g, i, strings.Repeat("x", 60)) })
			}
			if err := w.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(readFile(t, path), "\n"), "\n")
	if len(lines) != 2*n {
		t.Fatalf("%d lines, want %d", len(lines), 2*n)
	}
	for _, l := range lines {
		if len(l) != len("gen0 000000 ")+60 {
			t.Fatalf("torn line %q", l)
		}
	}
}

// A set shares one file per path and writes "stdout" to its stdout.
func TestSetSharesFilesAndStdout(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	s := NewSet(&out, io.Discard, FileOptions{FlushInterval: time.Hour}, quietLog())
	path := filepath.Join(dir, "access.log")
	a, err := s.Observer(config.AccessLog{Path: path, Format: "a %response_code%"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Observer(config.AccessLog{Path: path, Format: "b %request_method%"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Observer(config.AccessLog{Path: "stdout", Format: "c %listener_name%"})
	if err != nil {
		t.Fatal(err)
	}
	info := record(t)
	a(info)
	b(info)
	c(info)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "a 201\nb GET\n" {
		t.Fatalf("file %q", got)
	}
	if out.String() != "c ingress\n" {
		t.Fatalf("stdout %q", out.String())
	}
}

// BenchmarkLine is the cost of one access log line on the request's
// goroutine (rendering MOSN's default format into the buffer), with the
// writer flushing to a file beside it.
func BenchmarkLine(b *testing.B) {
	f, err := Compile("")
	if err != nil {
		b.Fatal(err)
	}
	w, err := OpenFile(filepath.Join(b.TempDir(), "a.log"), nil, FileOptions{FlushInterval: 10 * time.Millisecond}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var req http1.Request
	head := []byte("GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if err := http1.ParseRequest(head, &req, 100); err != nil {
		b.Fatal(err)
	}
	info := &proxy.RequestInfo{Listener: "ingress", Start: time.Now(), Duration: time.Millisecond, Request: &req, Status: 200,
		Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, Local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2045}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Line(func(buf []byte) []byte { return f.Append(buf, info) })
		}
	})
}

// Lines written while SIGUSR1 reopens race with rotation; each
// line lands whole, once, in the old or the new file; none is lost.
func TestReopenUnderLoadLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	w, err := OpenFile(path, nil, FileOptions{FlushInterval: 5 * time.Millisecond}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	const writers, per = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				w.Line(func(b []byte) []byte { return fmt.Appendf(b, "g%d-%d", g, i) })
			}
		}()
	}
	var rotated []string
	for i := range 20 {
		r := filepath.Join(dir, fmt.Sprintf("access.log.%d", i))
		if err := os.Rename(path, r); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, r)
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
		go w.Flush()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil {
		t.Fatal("Reopen after Close succeeded")
	}
	seen := map[string]int{}
	for _, f := range append(rotated, path) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if len(l) > 0 {
				seen[string(l)]++
			}
		}
	}
	if len(seen) != writers*per {
		t.Fatalf("%d distinct lines, want %d", len(seen), writers*per)
	}
	for l, n := range seen {
		if n != 1 {
			t.Fatalf("line %q written %d times", l, n)
		}
	}
}

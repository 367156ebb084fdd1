package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

// panicLog is a logger that keeps the panic lines it gets.
type panicLog struct {
	mu    sync.Mutex
	lines []*logrus.Entry
}

func (h *panicLog) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }
func (h *panicLog) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, e)
	return nil
}

func (h *panicLog) got() []*logrus.Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*logrus.Entry(nil), h.lines...)
}

func newPanicLog() (*logrus.Entry, *panicLog) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	h := &panicLog{}
	l.AddHook(h)
	return logrus.NewEntry(l), h
}

func checkPanicLogged(t *testing.T, h *panicLog, what string) {
	t.Helper()
	waitFor(t, "the panic logged", func() bool { return len(h.got()) > 0 })
	lines := h.got()
	if len(lines) != 1 {
		t.Fatalf("%d panic lines, want 1", len(lines))
	}
	e := lines[0]
	stack, _ := e.Data["stack"].(string)
	if !strings.Contains(e.Message, what) || e.Data["panic"] != "boom" || !strings.Contains(stack, "goroutine") || len(stack) > maxPanicStack {
		t.Fatalf("panic line %q %v (stack %d bytes)", e.Message, e.Data["panic"], len(stack))
	}
}

// A panic while serving one HTTP connection closes that connection alone,
// logged once with its stack; the process serves the next ones and the
// connection is no longer tracked.
func TestHTTPPanicClosesOnlyItsConnection(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	log, h := newPanicLog()
	reg := stats.New()
	m := newManager(t, reg, appCluster(be.addr()))
	p, err := newHTTP(httpListener(config.HTTPProxyConfig{}), singleRoute(0), m, reg, log,
		WithRequestObserver(func(info *RequestInfo) {
			if info.Request != nil && string(info.Request.Path) == "/boom" {
				panic("boom")
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)
	c := dial(t, addr)
	io.WriteString(c, "GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		io.Copy(io.Discard, resp.Body)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the panicking connection stays open")
	}
	checkPanicLogged(t, h, "HTTP connection")
	waitFor(t, "the connection untracked", func() bool { return p.tracker.Len() == 0 })
	for range 3 {
		resp, body := get(t, &http.Client{}, "http://"+addr+"/")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("after the panic: %d %q", resp.StatusCode, body)
		}
	}
}

// A panic in a TCP session closes that session alone.
func TestTCPPanicClosesOnlyItsSession(t *testing.T) {
	echo := startEcho(t)
	log, h := newPanicLog()
	reg := stats.New()
	m := newManager(t, reg, config.Cluster{Name: "echo", Hosts: []config.Host{{Address: echo.addr}}})
	first := true
	var mu sync.Mutex
	p, err := newTCP(tcpListener("echo", 0), m, reg, log, WithSessionObserver(func(*RequestInfo) {
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			panic("boom")
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)
	c := dial(t, addr)
	io.WriteString(c, "hi")
	buf := make([]byte, 2)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.Close() // the session ends; its record panics
	checkPanicLogged(t, h, "TCP session")
	waitFor(t, "the session untracked", func() bool { return p.tracker.Len() == 0 })
	c = dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ok")
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("a session after the panic: %q %v", buf, err)
	}
}

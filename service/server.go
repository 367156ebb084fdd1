package service

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Timeouts of a service port. There is no write timeout: /debug/pprof/profile
// and /debug/pprof/trace stream for as many seconds as the client asks.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownPoll is how often Shutdown looks whether connections are left.
	shutdownPoll = 5 * time.Millisecond
)

// Server runs one service port (admin, pprof or metrics) on a listener the
// caller owns. Serve, Shutdown and Close behave as net/http's, except that a
// listener closed on purpose is not an error.
type Server struct {
	name  string
	srv   *http.Server
	conns atomic.Int64 // open connections, from the ConnState hook

	mu   sync.Mutex
	lns  []net.Listener // what Serve accepts on; Shutdown closes them
	shut bool           // Shutdown was called: Serve does nothing
}

// NewServer returns a Server named name (for errors and logs) that serves h.
// A nil log discards.
func NewServer(name string, h http.Handler, log *logrus.Entry) *Server {
	log = orDiscard(log).WithField("service", name)
	s := &Server{name: name}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          stdlog.New(errorLogWriter{log}, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.conns.Add(-1)
			}
		},
	}
	return s
}

// Serve accepts on l until l is closed or the server shuts down, and closes l
// when it returns. It returns nil when that happened on purpose: l closed by
// anyone (as on upgrade, when the old process stops accepting), Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return nil
	}
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	err := s.srv.Serve(l)
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("service: %s: serve: %w", s.name, err)
}

// Shutdown stops accepting, closes idle connections, answers in-flight
// requests with Connection: close and waits for them, bounded by ctx. It works
// whether or not the listener was already closed. If ctx ends first it returns
// ctx's error and leaves what remains open: call Close to cut it.
func (s *Server) Shutdown(ctx context.Context) error {
	// Not http.Server.Shutdown: that drops, unanswered, a connection whose
	// request it reads after the shutdown began — a client that connected
	// just before its listener closed would see EOF. Instead keep-alives end
	// (idle connections close now; every later response says Connection:
	// close) and the connections are waited for.
	// Keep-alives end before the listeners close: a request read once Serve
	// has returned must already be answered with Connection: close.
	s.srv.SetKeepAlivesEnabled(false)
	s.mu.Lock()
	s.shut = true
	for _, l := range s.lns {
		_ = l.Close() // stop accepting; already closed by the caller is fine
	}
	s.mu.Unlock()
	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	for s.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("service: %s: shutdown: %d connections left: %w", s.name, s.conns.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	err := s.srv.Close()
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("service: %s: close: %w", s.name, err)
}

// errorLogWriter sends net/http's own error log lines to logrus.
type errorLogWriter struct{ log *logrus.Entry }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

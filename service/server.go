package service

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
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
)

// Server runs one service port (admin, pprof or metrics) on a listener the
// caller owns. Serve, Shutdown and Close behave as net/http's, except that a
// listener closed on purpose is not an error.
type Server struct {
	name string
	srv  *http.Server
}

// NewServer returns a Server named name (for errors and logs) that serves h.
// A nil log discards.
func NewServer(name string, h http.Handler, log *logrus.Entry) *Server {
	log = orDiscard(log).WithField("service", name)
	return &Server{
		name: name,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          stdlog.New(errorLogWriter{log}, "", 0),
		},
	}
}

// Serve accepts on l until l is closed or the server shuts down, and closes l
// when it returns. It returns nil when that happened on purpose: l closed by
// anyone (as on upgrade, when the old process stops accepting), Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
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
	err := s.srv.Shutdown(ctx)
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("service: %s: shutdown: %w", s.name, err)
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

// Package proxy is mosnlite's data plane: the TCP proxy and the HTTP/1.1
// reverse proxy. Every accepted connection is tracked per listener so that a
// drain can see it, ask it to finish, and close it.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/server/conntrack"
	"github.com/mosnlite/mosnlite/service/stats"
)

// Proxy serves one listener.
type Proxy interface {
	// Serve accepts on l until l is closed, then returns nil. Accepted
	// connections outlive Serve; see Drain, Wait and CloseAll.
	Serve(l net.Listener) error
	// Drain asks every connection to finish at its next safe point: HTTP
	// connections close at a request boundary, TCP sessions run to their end.
	Drain()
	// CloseAll closes every connection now.
	CloseAll()
	// Wait returns nil once no connection is left, or ctx's error.
	Wait(ctx context.Context) error
	// Active returns the number of live connections.
	Active() int
}

// Accept-error backoff bounds, as net/http uses.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// base is what both proxies share: the tracker, listener metrics and the accept loop.
type base struct {
	name    string
	log     *logrus.Entry
	tracker *conntrack.Tracker
	cxTotal *stats.Counter
	rxBytes *stats.Counter
	txBytes *stats.Counter
	sleep   func(time.Duration) // accept backoff; injectable
	// park receives connections paused for a move; nil until Migrate.
	park atomic.Pointer[func(*Parked)]
	// handshaker, if set, begins every connection (TLS); such a
	// listener's connections never move.
	handshaker Handshaker
}

func newBase(name, component string, reg *stats.Registry, log *logrus.Entry) *base {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &base{
		name: name,
		log:  log.WithFields(logrus.Fields{"component": component, "listener": name}),
		tracker: conntrack.New(name, reg.Gauge("listener.downstream_cx_active",
			"Downstream connections open now.", "listener", name)),
		cxTotal: reg.Counter("listener.downstream_cx_total",
			"Downstream connections accepted.", "listener", name),
		rxBytes: reg.Counter("listener.downstream_cx_rx_bytes_total",
			"Bytes received from downstream clients.", "listener", name),
		txBytes: reg.Counter("listener.downstream_cx_tx_bytes_total",
			"Bytes sent to downstream clients.", "listener", name),
		sleep: time.Sleep,
	}
}

func (b *base) Drain()                         { b.tracker.Drain() }
func (b *base) CloseAll()                      { b.tracker.CloseAll() }
func (b *base) Wait(ctx context.Context) error { return b.tracker.Wait(ctx) }
func (b *base) Active() int                    { return b.tracker.Len() }

// Tracker exposes the connection tracker.
func (b *base) Tracker() *conntrack.Tracker { return b.tracker }

// acceptLoop accepts until l is closed, handing each connection to handle.
// Transient errors (fd exhaustion, aborted handshakes) back off, bounded.
func (b *base) acceptLoop(l net.Listener, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !temporaryAcceptError(err) {
				return fmt.Errorf("proxy: listener %s: accept: %w", b.name, err)
			}
			if delay == 0 {
				delay = acceptBackoffMin
			} else {
				delay = min(2*delay, acceptBackoffMax)
			}
			b.log.WithError(err).WithField("retry_in", delay).Warn("accept failed")
			b.sleep(delay)
			continue
		}
		delay = 0
		b.cxTotal.Inc()
		handle(nc)
	}
}

func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// remoteString names a connection's peer for logs; unix peers may have no address.
func remoteString(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return "-"
}

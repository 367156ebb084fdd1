package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// Listener is one open listening socket of a Set.
type Listener struct {
	// Spec is the listener's identity. For a port-0 tcp listener its Address
	// holds the port actually bound.
	Spec Spec
	net.Listener
	// Inherited tells a socket adopted from the previous process from one bound here.
	Inherited bool

	closed atomic.Bool
	paused atomic.Bool
	// identity of a unix socket file, recorded when the listener opened, so
	// that RemoveUnixPaths never deletes a path someone else re-bound. The
	// change time is part of it because inode numbers are reused at once.
	path ident.PathID
}

// deadliner is what TCP and unix listeners have to wake a blocked Accept.
type deadliner interface{ SetDeadline(time.Time) error }

// Accept waits for the next connection. After Pause it returns net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.paused.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("listener %s paused: %w", l.Spec.Name, net.ErrClosed)
	}
	return c, err
}

// Pause stops accepting without closing the socket: a blocked Accept returns
// net.ErrClosed, as after Close, but the kernel socket, its accept queue and
// its descriptor stay (a successor accepts from the same socket; Resume
// serves it again). Export still includes it.
func (l *Listener) Pause() error {
	d, ok := l.Listener.(deadliner)
	if !ok {
		return fmt.Errorf("listener %s: %T cannot pause", l.Spec, l.Listener)
	}
	l.paused.Store(true)
	return d.SetDeadline(time.Unix(1, 0))
}

// Resume undoes Pause: Accept waits for connections again.
func (l *Listener) Resume() error {
	d, ok := l.Listener.(deadliner)
	if !ok {
		return fmt.Errorf("listener %s: %T cannot resume", l.Spec, l.Listener)
	}
	l.paused.Store(false)
	return d.SetDeadline(time.Time{})
}

// Close stops accepting. A unix listener's path is left in place: the
// socket may be served by a successor process.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

// Closed reports whether Close was called.
func (l *Listener) Closed() bool { return l.closed.Load() }

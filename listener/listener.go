package listener

import (
	"net"
	"sync/atomic"
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
	// identity of a unix socket file, recorded when the listener opened, so
	// that RemoveUnixPaths never deletes a path someone else re-bound. The
	// change time is part of it because inode numbers are reused at once.
	path pathID
}

// Close stops accepting. A unix listener's path is left in place: the
// socket may be served by a successor process.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

// Closed reports whether Close was called.
func (l *Listener) Closed() bool { return l.closed.Load() }

package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mosnlite/mosnlite/listener"
)

// Kinds of connections that can move to a successor process.
const (
	KindTCP  = "tcp"  // a TCP proxy session: downstream and upstream sockets
	KindHTTP = "http" // an HTTP/1.1 downstream connection between requests
	// KindTunnel is an HTTP/1.1 connection that switched protocols (a
	// WebSocket): downstream and upstream sockets, moved like a TCP session
	// and served by the HTTP listener of the same name.
	KindTunnel = "http_tunnel"
)

// Carries reports whether a listener whose proxy is of kind listenerKind
// takes connections of kind conn: its own, and an HTTP listener tunnels.
func Carries(listenerKind, conn string) bool {
	return conn == listenerKind || listenerKind == KindHTTP && conn == KindTunnel
}

// Handover is a connection on its way between processes: its sockets and
// what its old owner had read but not yet written.
type Handover struct {
	Listener  string
	Kind      string
	StartedAt time.Time
	// Files are the sockets: tcp and http_tunnel [downstream, upstream];
	// http [downstream].
	Files []*os.File
	// ToUpstream and ToDownstream (tcp, http_tunnel) were read from one
	// side and not yet written to the other.
	ToUpstream, ToDownstream []byte
	// Buffered (http) was read from the client and not yet parsed: the
	// beginning of the next request, possibly pipelined.
	Buffered []byte
	// Requests (http, http_tunnel) is how many requests the connection
	// carried so far.
	Requests uint64
}

// Parked is a connection stopped at a safe point, waiting to learn whether a
// successor took it. Its Files are duplicates it owns; Moved or Resume
// closes them. Exactly one of the two must be called (later calls do nothing).
type Parked struct {
	Handover
	once   sync.Once
	decide func(moved bool)
}

// NewParked makes a parked connection whose decision goes to decide (called
// once, after the files are closed). The proxies park their own
// connections; this is for other implementations and tests.
func NewParked(h Handover, decide func(moved bool)) *Parked {
	return &Parked{Handover: h, decide: decide}
}

// PendingBytes is how much data the handover carries besides the sockets.
func (h *Handover) PendingBytes() int {
	return len(h.ToUpstream) + len(h.ToDownstream) + len(h.Buffered)
}

// Moved says the successor serves the connection now: this process closes
// its copies of the sockets (a plain close: the sockets live on there) and
// forgets the connection.
func (p *Parked) Moved() { p.finish(true) }

// Resume says the connection stays: it carries on here and drains (a TCP
// session runs to its end, an HTTP connection closes at its next request
// boundary).
func (p *Parked) Resume() { p.finish(false) }

func (p *Parked) finish(moved bool) {
	p.once.Do(func() {
		for _, f := range p.Files {
			f.Close()
		}
		p.decide(moved)
	})
}

// Migrator is a Proxy whose connections can move to a successor process.
type Migrator interface {
	Proxy
	// Kind is KindTCP or KindHTTP.
	Kind() string
	// Migrate asks every connection to park at its next safe point and pass
	// itself to park, which must not block; connections accepted later do
	// the same. A connection that cannot move (a half-closed TCP session)
	// drains as before. A later Drain turns the rest back to draining.
	Migrate(park func(*Parked))
	// Adopt holds a connection that moved here, without serving it yet. It
	// duplicates what it keeps: h.Files stay the caller's.
	Adopt(h Handover) (Held, error)
}

// Held is an adopted connection that is not served yet.
type Held interface {
	// Start serves it: the predecessor has let go.
	Start()
	// Drop closes this process's copies of its sockets; the predecessor
	// keeps the connection.
	Drop()
}

// errPaused is returned inside a connection's loop when a move asked it to stop.
var errPaused = errors.New("paused for migration")

// errMoved ends a connection's loop: a successor serves it now.
var errMoved = errors.New("moved to a successor")

// Migrate implements Migrator for both proxies. A listener whose
// connections begin with a handshake (TLS) cannot hand them over with
// their crypto state: they drain instead.
func (b *base) Migrate(park func(*Parked)) {
	if b.handshaker != nil {
		b.tracker.Drain()
		return
	}
	b.park.Store(&park)
	b.tracker.Migrate()
}

// parkFunc is where connections hand themselves over, nil if no migration runs.
func (b *base) parkFunc() func(*Parked) {
	if f := b.park.Load(); f != nil {
		return *f
	}
	return nil
}

// refuseAdopt refuses a connection offered to a listener that
// terminates TLS: it would be served without its TLS.
func (b *base) refuseAdopt() error {
	if b.handshaker == nil {
		return nil
	}
	return fmt.Errorf("proxy: listener %s terminates TLS: connections do not move to it", b.name)
}

// dupConn returns a close-on-exec duplicate of nc's descriptor (listener.Dup:
// never File(), so the shared socket stays in non-blocking mode).
func dupConn(nc net.Conn, name string) (*os.File, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("proxy: %T has no file descriptor", nc)
	}
	f, err := listener.Dup(sc, name)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return f, nil
}

// fileConn makes a net.Conn of its own from a received socket; f stays the caller's.
func fileConn(f *os.File, what string) (net.Conn, error) {
	if f == nil {
		return nil, fmt.Errorf("proxy: adopt: no %s socket", what)
	}
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("proxy: adopt %s socket: %w", what, err)
	}
	return nc, nil
}

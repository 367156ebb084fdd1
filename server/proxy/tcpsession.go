package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

var errSessionIdle = errors.New("tcp session idle")

// sessionOwner is what a byte session needs of the proxy that holds it: a
// TCP proxy's sessions, or the tunnels of an HTTP proxy's upgraded
// connections (httpupgrade.go).
type sessionOwner struct {
	*base
	kind        string        // KindTCP or KindTunnel: what it moves as
	idleTimeout time.Duration // nothing moved either way this long: the session ends
	// cluster (tcp) is where a new session connects.
	cluster *cluster.Cluster
	// active, if set, follows the sessions pumping in this process.
	active *stats.Gauge
	// ended, if set, records the end of a session that ends in this
	// process (not one a successor carries on) after d since its original
	// accept.
	ended func(s *tcpSession, d time.Duration)
	// clusters numbers the connections (MOSN's connection_id).
	clusters *cluster.Manager
}

// tcpSession is one proxied TCP connection, or an upgraded HTTP connection
// (a tunnel): both sockets and both copy directions, with any bytes read but
// not yet written kept in the pipes.
type tcpSession struct {
	p      *sessionOwner
	down   net.Conn // accepted from the client
	ctx    context.Context
	cancel context.CancelFunc
	remove func()
	// started is the accept, in this process or, for a session that moved
	// here, in the one that accepted it.
	started time.Time

	id    uint64 // the downstream connection's number (MOSN's connection_id)
	flags ResponseFlags

	mu     sync.Mutex
	up     net.Conn      // to the upstream host (upc's socket); nil until connected
	upc    *cluster.Conn // the cluster's record of it, open until closed; nil for an adopted tunnel to no known host
	host   *cluster.Host
	closed bool
	// Migration state, under mu. A move pauses both directions at a safe
	// point (pausing), the second one to park hands the session over, and
	// decide ends the pause one way or the other.
	running    bool          // both copy directions started
	ended      int           // copy directions that have returned
	moveWanted bool          // Migrate was called
	moveTried  bool          // a move was decided or is impossible: drain from now on
	parked     int           // directions stopped at the pause
	decided    chan struct{} // closed when the pause ends
	moved      bool
	pausing    atomic.Bool // read by the copy loops without mu

	// lastActive is the UnixNano time of the last byte moved either way.
	lastActive atomic.Int64

	toUp   pipe // client → upstream
	toDown pipe // upstream → client

	// requests (a tunnel) is how many requests the connection carried
	// before its upgrade, passed on when it moves.
	requests uint64
}

// pipe is one copy direction. pending holds bytes read from src and not yet
// written to dst.
type pipe struct {
	src, dst net.Conn
	buf      []byte
	pending  []byte
	rx, tx   *stats.Counter // counted on read from src / write to dst; either may be nil
	// n counts this session's bytes on the counted side (read from the
	// client, or written to it), for its record.
	n atomic.Int64
}

// Drain does nothing: a TCP session runs to its natural end.
func (s *tcpSession) Drain() {}

// Close closes both sockets now. It is a plain close: a socket that a
// successor holds too lives on there.
func (s *tcpSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	up, upc := s.up, s.upc
	s.mu.Unlock()
	s.cancel()
	err := s.down.Close()
	switch {
	case upc != nil:
		_ = upc.Close()
	case up != nil:
		_ = up.Close()
	}
	return err
}

// recordEnd records the end of a session that ends here, not one a successor
// carries on: its duration since the original accept, in the metrics and
// for the observers.
func (s *tcpSession) recordEnd() {
	s.mu.Lock()
	moved := s.moved
	s.mu.Unlock()
	if !moved && s.p.ended != nil {
		s.p.ended(s, time.Since(s.started))
	}
}

func (s *tcpSession) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// errCopyPanicked ends a session whose copy goroutine panicked.
var errCopyPanicked = errors.New("copy panicked")

// recoverPanic, deferred at the top of a session's goroutines, turns a
// panic into the close of this session alone, logged once.
func (s *tcpSession) recoverPanic() {
	if r := recover(); r != nil {
		logPanic(s.p.log.WithField("client", remoteString(s.down)), "TCP session", r)
		_ = s.Close()
	}
}

func (s *tcpSession) run() {
	defer s.remove()
	defer s.recoverPanic()
	defer s.recordEnd()
	defer s.Close()
	log := s.p.log.WithField("client", remoteString(s.down))

	upc, err := s.p.cluster.DialContext(s.ctx)
	if err != nil {
		var ce *cluster.ConnectError
		switch {
		case errors.Is(err, cluster.ErrOverflow):
			s.flags |= FlagUpstreamOverflow
			log.WithError(err).Debug("tcp session refused")
			return
		case errors.Is(err, cluster.ErrNoHealthyHost):
			s.flags |= FlagNoHealthyUpstream
		case errors.As(err, &ce):
			s.flags |= FlagUpstreamConnectFail
		}
		if s.ctx.Err() == nil {
			log.WithError(err).Warn("tcp upstream connect failed")
		}
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		upc.Close()
		return
	}
	s.up, s.upc, s.host = upc.Conn, upc, upc.Host()
	s.mu.Unlock()
	s.initPipes(nil, nil, s.p.cluster.BufferLimit())
	s.pump(log)
}

// initPipes sets up both directions, starting with what a predecessor had
// read and not yet written (nil for a new session). The upstream cluster's
// conn_buffer_limit_bytes (limit, 0 for none) bounds what each direction
// holds.
func (s *tcpSession) initPipes(toUp, toDown []byte, limit int) {
	size := bufSize
	if limit > 0 && limit < size {
		size = limit
	}
	s.toUp = pipe{src: s.down, dst: s.up, buf: make([]byte, size), pending: toUp, rx: s.p.rxBytes}
	s.toDown = pipe{src: s.up, dst: s.down, buf: make([]byte, size), pending: toDown, tx: s.p.txBytes}
}

// sessionEnded records a TCP proxy session that ended here after d: in the
// metrics, and for the observers.
func (p *tcpProxy) sessionEnded(s *tcpSession, d time.Duration) {
	p.metrics.Session(d)
	if len(p.observers) == 0 {
		return
	}
	info := RequestInfo{
		Listener: p.name, Start: s.started, Duration: d,
		Remote: s.down.RemoteAddr(), Local: s.down.LocalAddr(), ConnID: s.id,
		Cluster: p.cluster.Name(), Upstream: s.host,
		BytesReceived: s.toUp.n.Load(), BytesSent: s.toDown.n.Load(), Flags: s.flags,
	}
	if tcp, ok := info.Remote.(*net.TCPAddr); ok {
		info.Downstream = tcp.IP.String()
	}
	if s.upc != nil {
		info.UpstreamConnID, info.UpstreamLocal = s.upc.ID(), s.upc.LocalAddr()
	} else if s.up != nil {
		info.UpstreamLocal = s.up.LocalAddr()
	}
	if s.host != nil {
		info.Attempts = 1
	}
	for _, observe := range p.observers {
		observe(&info)
	}
}

// pump runs both copy directions until the session ends or moves.
func (s *tcpSession) pump(log *logrus.Entry) {
	if s.host != nil {
		s.host.Acquire()
		defer s.host.Release()
	}
	if s.p.active != nil {
		s.p.active.Inc()
		defer s.p.active.Dec()
	}
	s.touch()
	errs := make(chan error, 2)
	for _, p := range []*pipe{&s.toUp, &s.toDown} {
		go func() {
			err := errCopyPanicked
			defer func() {
				s.dirEnded()
				errs <- err
			}()
			defer s.recoverPanic()
			err = s.copy(p)
		}()
	}
	s.mu.Lock()
	s.running = true
	if s.moveWanted && !s.moveTried {
		s.pauseLocked()
	}
	s.mu.Unlock()
	for range 2 {
		if err := <-errs; err != nil {
			// One direction failed or moved: end both (this unblocks the other).
			if s.ctx.Err() == nil && !errors.Is(err, errSessionIdle) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errMoved) {
				log.WithError(err).WithField("kind", s.p.kind).Debug("session ended by error")
			}
			s.Close()
		}
	}
}

// copy moves bytes from p.src to p.dst until src's EOF, which it passes on
// as a half-close of dst. It returns nil on EOF, errSessionIdle when nothing
// has moved either way for the idle timeout, errMoved when a successor took
// the session, or the I/O error.
func (s *tcpSession) copy(p *pipe) error {
	for {
		// What a predecessor handed over, or what a pause interrupted.
		if err := s.flushAll(p); err != nil {
			return err
		}
		if err := s.waitDeadline(p.src.SetReadDeadline); err != nil {
			if !errors.Is(err, errPaused) {
				return err
			}
			if s.park() {
				return errMoved
			}
			continue
		}
		n, err := p.src.Read(p.buf)
		if n > 0 {
			s.touch()
			if p.rx != nil {
				p.rx.Add(float64(n))
				p.n.Add(int64(n))
			}
			p.pending = p.buf[:n]
			if werr := s.flushAll(p); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			if cw, ok := p.dst.(interface{ CloseWrite() error }); ok {
				if cerr := cw.CloseWrite(); cerr != nil {
					return fmt.Errorf("half-close: %w", cerr)
				}
				return nil
			}
			return err // cannot half-close: end the session
		case isTimeout(err):
			if s.pausing.Load() {
				continue // parks at the next deadline
			}
			if s.idle() {
				return errSessionIdle
			}
		default:
			return err
		}
	}
}

// flushAll writes p.pending, parking whenever a move pauses the session.
func (s *tcpSession) flushAll(p *pipe) error {
	for {
		err := s.flush(p)
		if !errors.Is(err, errPaused) {
			return err
		}
		if s.park() {
			return errMoved
		}
	}
}

// flush writes p.pending to p.dst, under the same idle rule as reads. A
// pause leaves what is not yet written in p.pending.
func (s *tcpSession) flush(p *pipe) error {
	for len(p.pending) > 0 {
		if err := s.waitDeadline(p.dst.SetWriteDeadline); err != nil {
			return err
		}
		n, err := p.dst.Write(p.pending)
		p.pending = p.pending[n:]
		if n > 0 {
			s.touch()
			if p.tx != nil {
				p.tx.Add(float64(n))
				p.n.Add(int64(n))
			}
		}
		if err != nil {
			if isTimeout(err) && (s.pausing.Load() || !s.idle()) {
				continue
			}
			if isTimeout(err) {
				return errSessionIdle
			}
			return err
		}
	}
	return nil
}

// waitDeadline sets a read or write deadline at the idle timeout after the
// session's last activity. It returns errPaused if a move wants the session
// to stop: checked after the deadline is set, so that a pause that set its
// own (expired) deadline just before is never overwritten unnoticed.
func (s *tcpSession) waitDeadline(set func(time.Time) error) error {
	last := time.Unix(0, s.lastActive.Load())
	if err := set(last.Add(s.p.idleTimeout)); err != nil {
		return err
	}
	if s.pausing.Load() {
		return errPaused
	}
	return nil
}

func (s *tcpSession) idle() bool {
	return time.Since(time.Unix(0, s.lastActive.Load())) >= s.p.idleTimeout
}

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

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/service/stats"
)

var errSessionIdle = errors.New("tcp session idle")

// tcpSession is one proxied TCP connection: both sockets and both copy
// directions, with any bytes read but not yet written kept in the pipes.
type tcpSession struct {
	p      *tcpProxy
	down   net.Conn // accepted from the client
	ctx    context.Context
	cancel context.CancelFunc
	remove func()

	mu     sync.Mutex
	up     net.Conn // to the upstream host; nil until connected
	host   *cluster.Host
	closed bool

	// lastActive is the UnixNano time of the last byte moved either way.
	lastActive atomic.Int64

	toUp   pipe // client → upstream
	toDown pipe // upstream → client
}

// pipe is one copy direction. pending holds bytes read from src and not yet
// written to dst.
type pipe struct {
	src, dst net.Conn
	buf      []byte
	pending  []byte
	rx, tx   *stats.Counter // counted on read from src / write to dst; either may be nil
}

// Drain does nothing: a TCP session runs to its natural end.
func (s *tcpSession) Drain() {}

// Close closes both sockets now.
func (s *tcpSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	up := s.up
	s.mu.Unlock()
	s.cancel()
	err := s.down.Close()
	if up != nil {
		_ = up.Close()
	}
	return err
}

func (s *tcpSession) touch() { s.lastActive.Store(time.Now().UnixNano()) }

func (s *tcpSession) run() {
	defer s.remove()
	defer s.Close()
	log := s.p.log.WithField("client", remoteString(s.down))

	up, host, err := s.p.cluster.DialContext(s.ctx)
	if err != nil {
		if s.ctx.Err() == nil {
			log.WithError(err).Warn("tcp upstream connect failed")
		}
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		up.Close()
		return
	}
	s.up, s.host = up, host
	s.mu.Unlock()
	host.Acquire()
	defer host.Release()

	s.touch()
	s.toUp = pipe{src: s.down, dst: up, buf: make([]byte, bufSize), rx: s.p.rxBytes}
	s.toDown = pipe{src: up, dst: s.down, buf: make([]byte, bufSize), tx: s.p.txBytes}
	errs := make(chan error, 2)
	go func() { errs <- s.copy(&s.toUp) }()
	go func() { errs <- s.copy(&s.toDown) }()
	for range 2 {
		if err := <-errs; err != nil {
			// One direction failed: end both (this unblocks the other).
			if s.ctx.Err() == nil && !errors.Is(err, errSessionIdle) && !errors.Is(err, net.ErrClosed) {
				log.WithError(err).Debug("tcp session ended by error")
			}
			s.Close()
		}
	}
}

// copy moves bytes from p.src to p.dst until src's EOF, which it passes on
// as a half-close of dst. It returns nil on EOF, errSessionIdle when nothing
// has moved either way for the idle timeout, or the I/O error.
func (s *tcpSession) copy(p *pipe) error {
	for {
		if err := s.waitDeadline(p.src.SetReadDeadline); err != nil {
			return err
		}
		n, err := p.src.Read(p.buf)
		if n > 0 {
			s.touch()
			if p.rx != nil {
				p.rx.Add(float64(n))
			}
			p.pending = p.buf[:n]
			if werr := s.flush(p); werr != nil {
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
			if s.idle() {
				return errSessionIdle
			}
		default:
			return err
		}
	}
}

// flush writes p.pending to p.dst, under the same idle rule as reads.
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
			}
		}
		if err != nil {
			if isTimeout(err) && !s.idle() {
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
// session's last activity.
func (s *tcpSession) waitDeadline(set func(time.Time) error) error {
	last := time.Unix(0, s.lastActive.Load())
	if err := set(last.Add(s.p.idleTimeout)); err != nil {
		return err
	}
	return nil
}

func (s *tcpSession) idle() bool {
	return time.Since(time.Unix(0, s.lastActive.Load())) >= s.p.idleTimeout
}

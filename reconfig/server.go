package reconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

const (
	// ackGrace is how long past the manifest's AckDeadline the old process
	// still reads, so that an ack the new one sent in time is never missed.
	ackGrace = time.Second
	// busyWriteTimeout bounds writing the 'B' answer.
	busyWriteTimeout = time.Second
	// acceptRetry is the pause after an unexpected accept error (EMFILE…).
	acceptRetry = 100 * time.Millisecond
)

// ServerConfig is what the running process's Server needs from the lead.
type ServerConfig struct {
	Log *logrus.Entry
	// HandoffTimeout bounds one handoff from the request to the ack
	// (DefaultHandoffTimeout when zero).
	HandoffTimeout time.Duration
	// Export returns the manifest and one file per entry, in entry order.
	// Generation, StartTime, Entries and Counters are the caller's; the
	// Server fills in Version, PID and AckDeadline. The Server closes the
	// files after sending them, on every path.
	Export func() (Manifest, []*os.File, error)
	// OnAck is called once the new process acked: stop accepting and drain.
	// The Server has already stopped accepting on reconfig.sock. It runs on
	// the handoff goroutine and must not call Close.
	OnAck func(newPID int)
	// OnFail, if set, is called after a handoff failed before the ack
	// (already logged); nothing was stopped. It must not call Close.
	OnFail func(newPID int, err error)
	// MigrateTimeout bounds one Migrate batch (DefaultMigrateTimeout when zero).
	MigrateTimeout time.Duration
}

// Server is the running process's side: it accepts upgrade requests on
// reconfig.sock, one handoff at a time, and after an acked handoff carries
// the drain's counter increments to the successor.
type Server struct {
	cfg  ServerConfig
	log  *logrus.Entry
	ln   *net.UnixListener
	dir  string
	id   pathID // reconfig.sock as we bound it
	pid  int
	euid uint32
	pred <-chan struct{} // closed once our own predecessor is done; nil if none

	busy chan struct{} // one token: held for the length of a handoff
	quit chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	handedOff bool
	active    map[*net.UnixConn]struct{} // connections of a handoff in progress
	peer      *net.UnixConn              // the acked successor's connection
	peerPID   int
	targets   []MigrationTarget // listeners the successor takes connections for

	// Migration: one batch at a time, under migMu. Only Migrate reads the
	// peer connection; a failed read leaves the stream unusable for reading.
	migMu     sync.Mutex
	peerDec   *wire.Decoder
	batch     uint64
	migBroken error
}

func newServer(ln *net.UnixListener, dir string, pid int, euid uint32, pred <-chan struct{}, cfg ServerConfig) *Server {
	if cfg.HandoffTimeout <= 0 {
		cfg.HandoffTimeout = DefaultHandoffTimeout
	}
	if cfg.MigrateTimeout <= 0 {
		cfg.MigrateTimeout = DefaultMigrateTimeout
	}
	s := &Server{
		cfg: cfg, log: orDiscard(cfg.Log), ln: ln, dir: dir, pid: pid, euid: euid, pred: pred,
		busy: make(chan struct{}, 1), quit: make(chan struct{}),
		active: map[*net.UnixConn]struct{}{},
	}
	s.id, _ = statPath(filepath.Join(dir, ReconfigSock))
	s.wg.Add(1)
	return s
}

// serve accepts on reconfig.sock until Close or an acked handoff.
func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.stopped() {
				return
			}
			s.log.WithError(err).Warn("accept on reconfig.sock")
			select {
			case <-s.quit:
				return
			case <-time.After(acceptRetry):
			}
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.handedOff
}

func (s *Server) handle(c *net.UnixConn) {
	newPID, err := wire.CheckPeer(c, s.euid)
	if err != nil {
		s.log.WithError(err).WithField("old_pid", s.pid).Warn("refused a connection on reconfig.sock")
		c.Close()
		return
	}
	log := s.log.WithFields(logrus.Fields{"old_pid": s.pid, "new_pid": newPID})
	if why := s.acquire(); why != "" {
		log.Info("upgrade request refused: " + why)
		c.SetWriteDeadline(time.Now().Add(busyWriteTimeout))
		c.Write([]byte{'B'})
		c.Close()
		return
	}
	if !s.track(c) {
		c.Close()
		<-s.busy
		return
	}
	log.Info("upgrade requested")
	hc, targets, err := s.handoff(c, newPID, log)
	s.untrackClose(c)
	if err != nil {
		<-s.busy // ready for the next upgrade before anyone hears of this one
		log.WithError(err).Warn("upgrade failed; still serving")
		if s.cfg.OnFail != nil {
			s.cfg.OnFail(newPID, err)
		}
		return
	}
	// The token stays taken: nothing more is accepted.
	s.mu.Lock()
	s.handedOff = true
	s.peer, s.peerPID = hc, newPID
	s.targets = targets
	delete(s.active, hc)
	s.ln.Close() // stop accepting; the path is the successor's now
	s.mu.Unlock()
	s.migMu.Lock()
	s.peerDec = newDecoder(hc)
	s.migMu.Unlock()
	log.WithField("migration_targets", len(targets)).Info("upgrade acked: stopped accepting on reconfig.sock")
	if s.cfg.OnAck != nil {
		s.cfg.OnAck(newPID)
	}
}

// acquire takes the one-handoff token, refusing while our own predecessor
// still drains into us. It returns why it refused, or "".
func (s *Server) acquire() string {
	if s.pred != nil {
		select {
		case <-s.pred:
		default:
			return "the previous process is still draining into this one"
		}
	}
	select {
	case s.busy <- struct{}{}:
		return ""
	default:
		return "another upgrade is in progress"
	}
}

// track registers a handoff connection so that Close can abort it.
func (s *Server) track(c *net.UnixConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.handedOff {
		return false
	}
	s.active[c] = struct{}{}
	return true
}

func (s *Server) untrackClose(c *net.UnixConn) {
	s.mu.Lock()
	delete(s.active, c)
	s.mu.Unlock()
	c.Close()
}

// handoff runs the old side from 'U' to the ack and returns the handoff
// connection, still open, and the listeners the new process takes
// connections for, on success.
func (s *Server) handoff(c *net.UnixConn, newPID int, log *logrus.Entry) (*net.UnixConn, []MigrationTarget, error) {
	timeout := s.cfg.HandoffTimeout
	deadline := time.Now().Add(timeout)
	step := func(what string, err error) error {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("reconfig: new process (pid %d) did not %s within the %s handoff deadline", newPID, what, timeout)
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("connection closed")
		}
		return fmt.Errorf("reconfig: new process (pid %d) did not %s: %w", newPID, what, err)
	}

	c.SetDeadline(deadline)
	if _, err := c.Write([]byte{'U'}); err != nil {
		return nil, nil, step("read our upgrade signal", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, nil, step("listen on listen.sock", err)
	}
	if b[0] != 'L' {
		return nil, nil, fmt.Errorf("reconfig: new process (pid %d) answered %q, want 'L'", newPID, b[0])
	}

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "unix", filepath.Join(s.dir, ListenSock))
	if err != nil {
		return nil, nil, step("accept on listen.sock", err)
	}
	hc := raw.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			s.untrackClose(hc)
		}
	}()
	if !s.track(hc) {
		return nil, nil, errors.New("reconfig: server closed during the handoff")
	}
	peerPID, err := wire.CheckPeer(hc, s.euid)
	if err == nil && peerPID != newPID {
		err = fmt.Errorf("peer pid %d is not the upgrading process (pid %d)", peerPID, newPID)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reconfig: process on listen.sock: %w", err)
	}
	log.Info("connected to the new process's listen.sock")

	n, err := s.sendManifest(hc, deadline)
	if err != nil {
		return nil, nil, err
	}
	log.WithField("listeners", n).Info("manifest sent, waiting for ack")

	// Read until the ack deadline plus a grace: the new process refuses to
	// ack after AckDeadline, so an ack sent in time is never missed.
	hc.SetDeadline(deadline.Add(ackGrace))
	dec := newDecoder(hc)
	f, err := dec.Next()
	if err != nil {
		return nil, nil, step("ack", err)
	}
	f.CloseFDs()
	var targets []MigrationTarget
	switch f.Type {
	case typeAck:
		var a ackMsg
		if err := decodePayload(f, &a); err != nil {
			// Acked all the same; only migration is off.
			log.WithError(err).Warn("ack payload unreadable: no connection migration")
		}
		targets = validTargets(a.Migration)
	case typeNack:
		var m nackMsg
		if err := decodePayload(f, &m); err != nil {
			return nil, nil, fmt.Errorf("reconfig: new process (pid %d) gave up: %w", newPID, err)
		}
		return nil, nil, fmt.Errorf("reconfig: new process (pid %d) gave up: %s", newPID, wire.Bound(m.Reason, maxNackReason))
	default:
		return nil, nil, fmt.Errorf("reconfig: new process (pid %d): %w", newPID, badFrame("expected ack, got %s", typeName(f.Type)))
	}
	hc.SetDeadline(time.Time{})
	ok = true
	return hc, targets, nil
}

// sendManifest exports and sends the manifest with its fds, closing the
// exported files whatever happens. It returns the number of fds sent.
func (s *Server) sendManifest(hc *net.UnixConn, deadline time.Time) (int, error) {
	if s.cfg.Export == nil {
		return 0, errors.New("reconfig: no Export callback")
	}
	m, files, err := s.cfg.Export()
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return 0, fmt.Errorf("reconfig: export listeners: %w", err)
	}
	if len(files) != len(m.Entries) {
		return 0, fmt.Errorf("reconfig: export listeners: %d entries but %d files", len(m.Entries), len(files))
	}
	fds := make([]int, len(files))
	for i, f := range files {
		// The fd is read under Control, not Fd(), which could flip the
		// shared socket to blocking mode.
		if fds[i], err = wire.RawFD(f); err != nil {
			return 0, fmt.Errorf("reconfig: export listeners: %s: %w", m.Entries[i].Name, err)
		}
	}
	m.Version, m.PID, m.AckDeadline = ProtocolVersion, s.pid, deadline
	p, err := json.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("reconfig: encode manifest: %w", err)
	}
	hc.SetDeadline(deadline)
	if err := writeFrame(hc, typeManifest, 0, p, fds); err != nil {
		return 0, fmt.Errorf("reconfig: send manifest: %w", err)
	}
	runtime.KeepAlive(files)
	return len(fds), nil
}

// SendCounters sends counter increments to the acked successor, which adds
// them to its own. Send what grew since the last call (sample.Delta against
// the previous snapshot; the first base is the manifest's Counters), not
// running totals.
func (s *Server) SendCounters(samples []sample.Sample) error {
	p, err := json.Marshal(countersMsg{Counters: samples})
	if err != nil {
		return fmt.Errorf("reconfig: encode counters: %w", err)
	}
	return s.sendPeer(typeCounters, p, false)
}

// Bye tells the successor that nothing more follows and closes the connection.
func (s *Server) Bye() error {
	p, _ := json.Marshal(byeMsg{PID: s.pid})
	return s.sendPeer(typeBye, p, true)
}

func (s *Server) sendPeer(typ msgType, p []byte, last bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peer == nil {
		return ErrNotHandedOff
	}
	s.peer.SetWriteDeadline(time.Now().Add(s.cfg.HandoffTimeout))
	err := writeFrame(s.peer, typ, 0, p, nil)
	if last || err != nil {
		s.peer.Close()
		s.peer = nil
	}
	if err != nil {
		return fmt.Errorf("reconfig: send %s to new process (pid %d): %w", typeName(typ), s.peerPID, err)
	}
	return nil
}

// HandedOff reports whether a successor acked.
func (s *Server) HandedOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handedOff
}

// Close stops accepting, aborts a handoff in progress (the old process keeps
// serving; the new one fails) and closes the successor's connection without
// a bye (call Bye first). It waits for the Server's goroutines, so it must
// not be called from OnAck or OnFail. If no handoff was acked and
// reconfig.sock is still the socket this Server bound, the path is removed:
// the proxy is stopping for good.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.ln.Close()
	for c := range s.active {
		c.Close()
	}
	if s.peer != nil {
		s.peer.Close()
		s.peer = nil
	}
	handedOff := s.handedOff
	s.mu.Unlock()
	s.wg.Wait()
	if handedOff {
		return nil
	}
	path := filepath.Join(s.dir, ReconfigSock)
	if now, ok := statPath(path); ok && now == s.id {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("reconfig: remove %s: %w", path, err)
		}
	}
	return nil
}

package reconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
)

const (
	// ackGrace is how long past the manifest's AckDeadline the old process
	// still reads, so that an ack the new one sent in time is never missed.
	ackGrace = time.Second
	// ackAwaitMax is the largest ack (or nack) waited for whole before it
	// is read (see wire.AwaitFrame): an ack names a few listeners.
	ackAwaitMax = 64 << 10
	// busyWriteTimeout bounds writing the 'B' answer.
	busyWriteTimeout = time.Second
	// acceptRetry is the pause after an unexpected accept error.
	acceptRetry = 100 * time.Millisecond
	// acceptWarnEvery rate-limits the warning about failing accepts.
	acceptWarnEvery = 10 * time.Second
	// spareFDs is how many descriptors are held for a process at its limit:
	// the accept on reconfig.sock and the dial to listen.sock need one each,
	// and a client listener retrying its accept may take a released one
	// before we do.
	spareFDs = 6
)

// ServerConfig is what the running process's Server needs from the lead.
type ServerConfig struct {
	Log *logrus.Entry
	// HandoffTimeout bounds one handoff from the request to the ack
	// (DefaultHandoffTimeout when zero).
	HandoffTimeout time.Duration
	// Export calls send with the manifest and one descriptor per entry, in
	// entry order, while the descriptors are open (listener.Set.Export does
	// so without duplicating them). Generation, StartTime, Entries,
	// Counters and Histograms are the caller's; the Server fills in Version,
	// PID and AckDeadline. A manifest over its frame limit is refused with
	// ErrManifestTooLarge before anything is sent: send may be called again.
	Export func(send func(m Manifest, fds []int) error) error
	// OnAck is called once the new process acked, with the drain stream to
	// it: stop accepting and drain. The Server has already stopped accepting
	// on reconfig.sock. It runs on the handoff goroutine and must not call
	// Close.
	OnAck func(s *Successor)
	// OnFail, if set, is called after a handoff failed before the ack
	// (already logged); nothing was stopped. It must not call Close.
	OnFail func(newPID int, err error)
	// OnRequest, if set, is called when an upgrade request is taken up,
	// before anything is sent, with the requester's pid as this process
	// sees it (0 for one in another PID namespace). A non-nil error refuses
	// it: the requester is told why ('R' and the reason), and nothing else
	// happens. It must not call Close.
	OnRequest func(newPID int) error
	// MigrateTimeout bounds one Migrate batch (DefaultMigrateTimeout when zero).
	MigrateTimeout time.Duration
	// MaxManifestSize and MaxCountsFrame lower the manifest's and the
	// counters frames' limits (zero: the frame types' own; tests set less).
	MaxManifestSize, MaxCountsFrame int
}

func (c ServerConfig) maxManifestSize() int {
	if c.MaxManifestSize <= 0 || c.MaxManifestSize > maxManifestSize {
		return maxManifestSize
	}
	return c.MaxManifestSize
}

// Server is the running process's side: it accepts upgrade requests on
// reconfig.sock, one handoff at a time, and hands the acked successor's
// drain stream to OnAck.
type Server struct {
	cfg  ServerConfig
	log  *logrus.Entry
	ln   *net.UnixListener
	dir  string
	id   ident.PathID // reconfig.sock as we bound it
	pid  int
	euid uint32
	pred *Upgrade // our own predecessor, while it drains into us; nil if none
	// spare descriptors, released when the process is out of them so that
	// an upgrade (the usual cure for a misconfigured limit) always goes
	// through: one for the accepted request, one for the dial to listen.sock.
	spare *fdReserve

	busy chan struct{} // one token: held for the length of a handoff
	quit chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	handedOff bool
	active    map[*net.UnixConn]struct{} // connections of a handoff in progress
}

func newServer(ln *net.UnixListener, dir string, pid int, euid uint32, pred *Upgrade, cfg ServerConfig) *Server {
	if cfg.HandoffTimeout <= 0 {
		cfg.HandoffTimeout = DefaultHandoffTimeout
	}
	if cfg.MigrateTimeout <= 0 {
		cfg.MigrateTimeout = DefaultMigrateTimeout
	}
	s := &Server{
		cfg: cfg, log: orDiscard(cfg.Log), ln: ln, dir: dir, pid: pid, euid: euid, pred: pred,
		spare: newFDReserve(spareFDs),
		busy:  make(chan struct{}, 1), quit: make(chan struct{}),
		active: map[*net.UnixConn]struct{}{},
	}
	s.id, _ = ident.StatPath(filepath.Join(dir, ReconfigSock))
	s.wg.Add(1)
	return s
}

// Reclaim makes this process the one upgrades reach again, after the
// successor it had handed over to died: under the upgrade lock (waited for
// until ctx ends, while a starter holds it) it binds reconfig.sock anew,
// replacing the dead successor's, and serves on it.
func Reclaim(ctx context.Context, dir string, cfg ServerConfig) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("reconfig: uds_dir: %w", err)
	}
	euid := uint32(os.Geteuid())
	if err := ensureDir(abs, euid); err != nil {
		return nil, err
	}
	var lock *os.File
	for {
		if lock, err = lockDir(abs); err == nil {
			break
		}
		if !errors.Is(err, ErrUpgradeInProgress) {
			return nil, err
		}
		t := time.NewTimer(acceptRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("reconfig: reclaim reconfig.sock: the upgrade lock stayed taken: %w", ctx.Err())
		case <-t.C:
		}
	}
	defer lock.Close()
	return listenReconfig(abs, os.Getpid(), euid, nil, cfg)
}

// listenReconfig binds reconfig.sock in dir (replacing what was there
// atomically) and serves upgrade requests on it: TakeOver's and Reclaim's
// common end, under the upgrade lock.
func listenReconfig(dir string, pid int, euid uint32, pred *Upgrade, cfg ServerConfig) (*Server, error) {
	ln, err := bindSocket(dir, ReconfigSock)
	if err != nil {
		return nil, err
	}
	srv := newServer(ln, dir, pid, euid, pred, cfg)
	go srv.serve()
	return srv, nil
}

// serve accepts on reconfig.sock until Close or an acked handoff. Out of
// descriptors, it releases a spare one for the request; the warning about
// failing accepts is logged at most every acceptWarnEvery.
func (s *Server) serve() {
	defer s.wg.Done()
	defer s.spare.close()
	warn := wire.Throttle{Every: acceptWarnEvery}
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.stopped() {
				return
			}
			if outOfFDs(err) && s.spare.release() {
				continue // at once: the spare is ours for this accept
			}
			if ok, n := warn.Allow(); ok {
				s.log.WithError(err).WithField("suppressed", n).Warn("accept on reconfig.sock")
			}
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

func outOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
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
		s.spare.refill()
		return
	}
	log := s.log.WithFields(logrus.Fields{"old_pid": s.pid, "new_pid": newPID})
	if why := s.acquire(); why != "" {
		log.Info("upgrade request refused: " + why)
		c.SetWriteDeadline(time.Now().Add(busyWriteTimeout))
		c.Write([]byte{'B'})
		c.Close()
		s.spare.refill()
		return
	}
	if !s.track(c) {
		c.Close()
		<-s.busy
		return
	}
	if s.cfg.OnRequest != nil {
		if err := s.cfg.OnRequest(newPID); err != nil {
			log.WithError(err).Warn("upgrade request refused")
			s.spare.refill()
			<-s.busy // free for the next request before this one hears its answer
			c.SetWriteDeadline(time.Now().Add(busyWriteTimeout))
			c.Write(append([]byte{'R'}, wire.Bound(err.Error(), maxRefusal)...))
			s.untrackClose(c)
			return
		}
	}
	log.Info("upgrade requested")
	reported := 0
	hc, ack, err := s.handoff(c, newPID, &reported, log)
	s.untrackClose(c)
	if reported != 0 {
		log = log.WithField("new_pid", wire.PIDLabel(newPID, reported))
	}
	if err != nil {
		s.spare.refill()
		<-s.busy // ready for the next upgrade before anyone hears of this one
		log.WithError(err).Warn("upgrade failed; still serving")
		if s.cfg.OnFail != nil {
			s.cfg.OnFail(newPID, err)
		}
		return
	}
	// The token stays taken: nothing more is accepted.
	targets := validTargets(ack.Migration)
	s.mu.Lock()
	s.handedOff = true
	delete(s.active, hc)
	s.ln.Close() // stop accepting; the path is the successor's now
	s.mu.Unlock()
	succ := NewSuccessor(hc, newPID, targets, ack.Watch, StreamConfig{
		Log: s.log, WriteTimeout: s.cfg.HandoffTimeout, MigrateTimeout: s.cfg.MigrateTimeout, MaxCountsFrame: s.cfg.MaxCountsFrame,
		ReportedPID: max(ack.PID, reported),
	})
	succ.dropped = validDropped(ack.Dropped)
	log.WithFields(logrus.Fields{"migration_targets": len(targets), "watch": ack.Watch}).Info("upgrade acked: stopped accepting on reconfig.sock")
	if s.cfg.OnAck != nil {
		s.cfg.OnAck(succ)
	}
}

// acquire takes the one-handoff token, refusing while our own predecessor
// still drains into us. A predecessor that has drained but still watches us
// goes on watching: only once a successor of ours has acked does it stop
// (the caller releases it in OnAck), so that an upgrade of ours that fails
// leaves the safety net in place. It returns why it refused, or "".
func (s *Server) acquire() string {
	if s.pred != nil && !s.pred.followed() {
		return "the previous process is still draining into this one"
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
// connection, still open, and the ack, on success. *reported is set to the
// pid the new process reports itself as, once it has said.
func (s *Server) handoff(c *net.UnixConn, newPID int, reported *int, log *logrus.Entry) (*net.UnixConn, ackMsg, error) {
	timeout := s.cfg.HandoffTimeout
	deadline := time.Now().Add(timeout)
	step := func(what string, err error) error {
		return stepError("new", wire.PIDLabel(newPID, *reported), what, timeout, err)
	}

	s.setDeadline(c, deadline)
	if _, err := c.Write([]byte{'U'}); err != nil {
		return nil, ackMsg{}, step("read our upgrade signal", err)
	}
	tok, hasToken, err := readListenSignal(c)
	if err != nil {
		var ws wrongSignal
		if errors.As(err, &ws) {
			return nil, ackMsg{}, fmt.Errorf("reconfig: new process (pid %d) %w", newPID, err)
		}
		return nil, ackMsg{}, step("listen on listen.sock", err)
	}

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "unix", filepath.Join(s.dir, ListenSock))
	// Out of descriptors, a spare is released for the dial; a client
	// listener's accept may take the slot first, so again while any is left.
	for err != nil && outOfFDs(err) && s.spare.release() {
		raw, err = d.DialContext(ctx, "unix", filepath.Join(s.dir, ListenSock))
	}
	if err != nil {
		return nil, ackMsg{}, step("accept on listen.sock", err)
	}
	hc := raw.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			s.untrackClose(hc)
		}
	}()
	if !s.track(hc) {
		return nil, ackMsg{}, errors.New("reconfig: server closed during the handoff")
	}
	peerPID, err := wire.CheckPeer(hc, s.euid)
	if err != nil {
		return nil, ackMsg{}, fmt.Errorf("reconfig: process on listen.sock: %w", err)
	}
	// The process that accepted our dial must be the one that asked: it
	// shows the half of its token that only reconfig.sock carried (see
	// proof.go) before it gets anything. One of an earlier version sent no
	// token: compare pids then.
	proof := ""
	if hasToken {
		s.setDeadline(hc, deadline)
		var h helloMsg
		f, err := newDecoder(hc).Next()
		switch {
		case err != nil:
			return nil, ackMsg{}, step("send its hello on listen.sock", err)
		case f.Type != typeHello:
			f.CloseFDs()
			return nil, ackMsg{}, fmt.Errorf("reconfig: process on listen.sock: %w", badFrame("expected hello, got %s", typeName(f.Type)))
		}
		if err := decodePayload(f, &h); err != nil {
			return nil, ackMsg{}, fmt.Errorf("reconfig: process on listen.sock: %w", err)
		}
		if !proofMatches(h.Proof, tok.newProof()) {
			return nil, ackMsg{}, errors.New("reconfig: process on listen.sock: its hello's handoff proof is not the one the upgrading process sent on reconfig.sock: refused")
		}
		if h.PID > 0 {
			*reported = h.PID
			log = log.WithField("new_pid", wire.PIDLabel(newPID, h.PID))
		}
		proof = tok.oldProof()
	} else if peerPID != newPID {
		return nil, ackMsg{}, fmt.Errorf("reconfig: process on listen.sock: peer pid %d is not the upgrading process (pid %d)", peerPID, newPID)
	}
	log.Info("connected to the new process's listen.sock")

	n, err := s.sendManifest(hc, deadline, proof)
	if err != nil {
		return nil, ackMsg{}, err
	}
	log.WithField("listeners", n).Info("manifest sent, waiting for ack")

	// Read until the ack deadline plus a grace. Past it the handoff is
	// settled (see settle): an ack the new process sent in time is never
	// lost, and it never counts itself the owner while we serve on.
	s.setDeadline(hc, deadline.Add(ackGrace))
	dec := newDecoder(hc)
	// Wait (until the deadline) for a whole frame in the socket before
	// reading any of it: a deadline that passes mid-frame — this process
	// stalled while the ack came in — would leave a frame half read.
	err = wire.AwaitFrame(hc, ackAwaitMax)
	var f frame
	if err == nil {
		hc.SetReadDeadline(time.Time{}) // all there: the read does not block
		f, err = dec.Next()
	}
	if err != nil {
		if f, err = s.settle(hc, dec, err); err != nil {
			return nil, ackMsg{}, step("ack", err)
		}
		log.Warn("ack found in the socket after the ack deadline: handing over")
	}
	f.CloseFDs()
	var a ackMsg
	switch f.Type {
	case typeAck:
		if err := decodePayload(f, &a); err != nil {
			// Acked all the same; only migration and the watch are off.
			log.WithError(err).Warn("ack payload unreadable: no connection migration")
			a = ackMsg{}
		}
	case typeNack:
		var m nackMsg
		if err := decodePayload(f, &m); err != nil {
			return nil, ackMsg{}, fmt.Errorf("reconfig: new process (pid %d) gave up: %w", newPID, err)
		}
		if m.PID > 0 && *reported == 0 {
			*reported = m.PID
		}
		return nil, ackMsg{}, fmt.Errorf("reconfig: new process (pid %v) gave up: %s", wire.PIDLabel(newPID, *reported), wire.Bound(m.Reason, maxNackReason))
	default:
		s.abort(hc, "expected ack, got "+typeName(f.Type))
		return nil, ackMsg{}, fmt.Errorf("reconfig: new process (pid %d): %w", newPID, badFrame("expected ack, got %s", typeName(f.Type)))
	}
	hc.SetDeadline(time.Time{})
	ok = true
	return hc, a, nil
}

// settle decides a handoff whose ack did not come while we waited (our
// deadline, or Close): our read side is shut first, so that from then on
// the new process's ack cannot be written (EPIPE), and what it sent before
// is read. An ack there was sent in time: it counts itself the owner, and
// the handoff goes on (the ack frame is returned). Anything else: we tell
// it the handoff is off (an abort frame, which it reads before it counts
// itself the owner) and serve on; why is returned.
func (s *Server) settle(hc *net.UnixConn, dec *wire.Decoder, why error) (frame, error) {
	_ = hc.CloseRead()
	hc.SetReadDeadline(time.Time{}) // after the shut, a read never blocks
	if f, err := dec.Next(); err == nil {
		if f.Type == typeAck {
			return f, nil
		}
		f.CloseFDs()
	}
	s.abort(hc, why.Error())
	return frame{}, why
}

// abort tells the new process, best effort and bounded, that the handoff is
// off: we serve on, it must not.
func (s *Server) abort(hc *net.UnixConn, reason string) {
	p, _ := json.Marshal(nackMsg{PID: s.pid, Reason: wire.Bound(reason, maxNackReason)})
	hc.SetWriteDeadline(time.Now().Add(busyWriteTimeout))
	_ = writeFrame(hc, typeAbort, flagOptional, p, nil)
}

// validDropped keeps the well-formed entries of an ack's dropped list.
func validDropped(specs []ident.Spec) []ident.Spec {
	var out []ident.Spec
	for _, sp := range specs {
		if sp.Valid() == nil && len(out) < maxManifestFDs {
			out = append(out, sp)
		}
	}
	return out
}

// setDeadline sets c's deadline, or one already passed once Close has
// begun, so that Close's interruption of a handoff is never undone.
func (s *Server) setDeadline(c *net.UnixConn, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		t = time.Now()
	}
	c.SetDeadline(t)
}

// sendManifest exports and sends the manifest with its descriptors. It
// returns the number of descriptors sent.
func (s *Server) sendManifest(hc *net.UnixConn, deadline time.Time, proof string) (int, error) {
	if s.cfg.Export == nil {
		return 0, errors.New("reconfig: no Export callback")
	}
	n := 0
	sent := false
	err := s.cfg.Export(func(m Manifest, fds []int) error {
		if len(fds) != len(m.Entries) {
			return fmt.Errorf("%d entries but %d descriptors", len(m.Entries), len(fds))
		}
		m.Version, m.PID, m.AckDeadline, m.Proof = ProtocolVersion, s.pid, deadline.Round(0), proof
		m.AckTimeout = max(time.Until(deadline), time.Nanosecond)
		p, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode manifest: %w", err)
		}
		if limit := s.cfg.maxManifestSize(); len(p) > limit {
			return fmt.Errorf("%w: %d bytes (%d counters, %d histograms), over the %d byte limit", ErrManifestTooLarge, len(p), len(m.Counters), len(m.Histograms), limit)
		}
		s.setDeadline(hc, deadline)
		sent = true
		if err := writeFrame(hc, typeManifest, 0, p, fds); err != nil {
			return fmt.Errorf("send manifest: %w", err)
		}
		n = len(fds)
		return nil
	})
	if err != nil {
		if sent {
			return 0, fmt.Errorf("reconfig: %w", err)
		}
		return 0, fmt.Errorf("reconfig: export listeners: %w", err)
	}
	return n, nil
}

// HandedOff reports whether a successor acked.
func (s *Server) HandedOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handedOff
}

// Close stops accepting and ends a handoff in progress: one whose new
// process has already acked goes on (OnAck runs, HandedOff reports true:
// the paths are the successor's); any other fails, the new process told
// so (the old process keeps serving; the new one gives up). It waits for
// the Server's goroutines, so it must not be called from OnAck or OnFail.
// If no handoff was acked and reconfig.sock is still the socket this
// Server bound, the path is removed: the proxy is stopping for good. An
// acked successor's drain stream is the OnAck callee's to close.
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
		// Interrupted, not closed: a handoff waiting for its ack settles
		// (an ack already sent goes on to a handover; otherwise the new
		// process is told the handoff is off), the others fail.
		c.SetDeadline(time.Now())
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	handedOff := s.handedOff
	s.mu.Unlock()
	if handedOff {
		return nil
	}
	path := filepath.Join(s.dir, ReconfigSock)
	if now, ok := ident.StatPath(path); ok && now == s.id {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("reconfig: remove %s: %w", path, err)
		}
	}
	return nil
}

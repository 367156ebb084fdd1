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
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
)

// DefaultHandoffTimeout bounds a handoff when no deadline is given.
const DefaultHandoffTimeout = 10 * time.Second

// goneAcceptGrace is how long, once the old process has closed its reconfig
// connection, the new one still takes a connection it made to listen.sock
// before it went.
const goneAcceptGrace = 100 * time.Millisecond

// nackWriteTimeout bounds the best-effort nack a failing new process sends.
const nackWriteTimeout = 2 * time.Second

// Upgrade is the starting process's side of a handoff, from Begin to
// TakeOver. It holds the upgrade lock until TakeOver or Fail.
type Upgrade struct {
	log  *logrus.Entry
	dir  string
	pid  int
	euid uint32

	mu       sync.Mutex
	lock     *os.File // upgrade.lock, held while non-nil
	fresh    bool
	oldPID   int // as SO_PEERCRED reports it: 0 for a process in another PID namespace
	manifest Manifest
	// ackFailedClosed: our ack could not be written because the old process
	// had closed the handoff connection (see PredecessorGone).
	ackFailedClosed bool
	// ackAborted: our ack could not be written because the old process
	// had settled the handoff without it; it said so (abort): it serves on.
	ackAborted  bool
	abortReason string
	ackWritten  bool // an ack was attempted on the connection
	sockets     []ident.Socket
	conn        *net.UnixConn // the handoff connection (accepted on listen.sock)
	acked       bool
	failed      bool
	orphaned    bool // the old process went away before our ack
	tookOver    bool
	targets     []MigrationTarget // sent with the ack (AcceptConnections)
	dropped     []ident.Spec      // sent with the ack (DropListeners)
	ackBy       time.Time         // the old process stops waiting for our ack then (see Manifest.AckTimeout)
	handler     ConnHandler       // gets the connections the old process moves
	follower    *Follower         // the drain stream, after the ack

	followOnce sync.Once
	followDone chan struct{} // closed when the predecessor is finished with us
}

// Begin starts this process's life in uds_dir dir: it takes the upgrade
// lock and asks a running process, if any, to hand over its listeners.
//
// With nobody answering on reconfig.sock (no file, or a stale one, which is
// removed) the result is a fresh start: Fresh reports true. Otherwise the
// returned Upgrade holds the old process's manifest and fds. Every step is
// bounded by ctx's deadline (DefaultHandoffTimeout when ctx has none).
// A lock held elsewhere, or an old process busy with another upgrade, is
// ErrUpgradeInProgress. On error nothing is left behind: fds closed,
// listen.sock removed, lock released, reconfig.sock untouched.
func Begin(ctx context.Context, dir string, log *logrus.Entry) (*Upgrade, error) {
	return begin(ctx, dir, log, os.Getpid(), uint32(os.Geteuid()))
}

func begin(ctx context.Context, dir string, log *logrus.Entry, pid int, euid uint32) (*Upgrade, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHandoffTimeout)
		defer cancel()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("reconfig: uds_dir: %w", err)
	}
	if err := ensureDir(abs, euid); err != nil {
		return nil, err
	}
	lock, err := lockDir(abs)
	if err != nil {
		return nil, err
	}
	u := &Upgrade{
		log: orDiscard(log), dir: abs, pid: pid, euid: euid,
		lock: lock, followDone: make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			u.release()
		}
	}()

	path := filepath.Join(abs, ReconfigSock)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, syscall.ENOENT):
		u.fresh = true
	case errors.Is(err, syscall.ECONNREFUSED):
		// A socket file nobody accepts on, left by a killed process. The lock
		// guarantees no other process is about to bind it.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reconfig: remove stale %s: %w", path, err)
		}
		u.log.WithField("path", path).Info("removed stale reconfig socket")
		u.fresh = true
	case err != nil:
		return nil, fmt.Errorf("reconfig: dial %s: %w", path, err)
	}
	if u.fresh {
		u.log.WithField("new_pid", pid).Info("no running process: fresh start")
		ok = true
		return u, nil
	}
	if err := u.handshake(ctx, c.(*net.UnixConn)); err != nil {
		return nil, err
	}
	ok = true
	return u, nil
}

// handshake runs the new side from the connected reconfig.sock to a received manifest.
func (u *Upgrade) handshake(ctx context.Context, c *net.UnixConn) error {
	defer c.Close()
	deadline, _ := ctx.Deadline()
	timeout := time.Until(deadline).Round(time.Millisecond)
	oldPID, err := wire.CheckPeer(c, u.euid)
	if err != nil {
		return fmt.Errorf("reconfig: process on reconfig.sock: %w", err)
	}
	u.oldPID = oldPID
	log := u.log.WithFields(logrus.Fields{"old_pid": oldPID, "new_pid": u.pid})
	log.Info("running process found, requesting upgrade")
	tok, err := newToken()
	if err != nil {
		return err
	}

	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	c.SetDeadline(deadline)
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return u.stepError("answer on reconfig.sock", timeout, err)
	}
	switch b[0] {
	case 'U':
	case 'B':
		return ErrUpgradeInProgress
	case 'R':
		return fmt.Errorf("reconfig: old process (pid %d) refused the upgrade: %s: %w", oldPID, readRefusal(c), ErrUpgradeRefused)
	default:
		return fmt.Errorf("reconfig: old process (pid %d) answered %q on reconfig.sock, want 'U'", oldPID, b[0])
	}

	ln, err := bindSocket(u.dir, ListenSock)
	if err != nil {
		return err
	}
	lnPath := filepath.Join(u.dir, ListenSock)
	defer func() {
		ln.Close()
		os.Remove(lnPath) // only the lock holder ever binds it
	}()
	if _, err := c.Write(tok.listenSignal()); err != nil {
		return u.stepError("read our listen signal", timeout, err)
	}
	log.Info("listening on listen.sock")

	hc, err := acceptOrGone(ctx, ln, c, deadline)
	if err != nil {
		return u.stepError("connect to listen.sock", timeout, err)
	}
	ln.Close()
	os.Remove(lnPath)

	peerPID, err := wire.CheckPeer(hc, u.euid)
	if err != nil {
		hc.Close()
		return fmt.Errorf("reconfig: process on listen.sock: %w", err)
	}

	stopH := context.AfterFunc(ctx, func() { hc.SetDeadline(time.Now()) })
	hc.SetDeadline(deadline)
	// Our proof first (an older old process skips it, flagged optional). A
	// failed write is the old process gone: the manifest read will say so.
	hello, _ := json.Marshal(helloMsg{PID: u.pid, Proof: tok.newProof()})
	if err := writeFrame(hc, typeHello, flagOptional, hello, nil); err != nil {
		log.WithError(err).Debug("send hello on listen.sock")
	}
	m, files, err := readManifest(newDecoder(hc))
	stopH()
	if err != nil {
		err = u.stepError("send its manifest", timeout, err)
		sendNack(hc, u.pid, err)
		hc.Close()
		return err
	}
	// The process that dialed listen.sock must be the one we asked: it shows
	// the half of our token that only the reconfig.sock connection carried.
	// An old process of an earlier version shows none: compare pids then.
	switch {
	case m.Proof != "" && !proofMatches(m.Proof, tok.oldProof()):
		err = errors.New("its manifest's handoff proof is not the one our reconfig.sock connection carried")
	case m.Proof == "" && peerPID != oldPID:
		err = fmt.Errorf("peer pid %d is not the old process (pid %d)", peerPID, oldPID)
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		err = fmt.Errorf("reconfig: process on listen.sock: %w", err)
		sendNack(hc, u.pid, err)
		hc.Close()
		return err
	}
	hc.SetDeadline(time.Time{})
	u.conn = hc
	u.manifest = m
	u.ackBy = m.AckDeadline
	if m.AckTimeout > 0 {
		u.ackBy = time.Now().Add(m.AckTimeout) // on our monotonic clock
	}
	for i := range files {
		u.sockets = append(u.sockets, ident.Socket{Spec: m.Entries[i], File: files[i]})
	}
	log.WithFields(logrus.Fields{"old_pid": u.oldLabel(), "listeners": len(files), "generation": m.Generation}).Info("received manifest")
	return nil
}

// oldLabel is the old process's pid for logs (see wire.PIDLabel).
func (u *Upgrade) oldLabel() any { return wire.PIDLabel(u.oldPID, u.manifest.PID) }

// readRefusal reads the reason an old process gives with its 'R' answer.
func readRefusal(c *net.UnixConn) string {
	b, _ := io.ReadAll(io.LimitReader(c, maxRefusal+1))
	return wire.Bound(string(b), maxRefusal)
}

// acceptOrGone accepts the old process's connection on ln, giving up at the
// deadline or as soon as the old process closes its reconfig connection.
func acceptOrGone(ctx context.Context, ln *net.UnixListener, c *net.UnixConn, deadline time.Time) (*net.UnixConn, error) {
	ln.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { ln.SetDeadline(time.Now()) })
	defer stop()
	gone := make(chan struct{})
	var watchErr error
	go func() {
		var b [1]byte
		_, watchErr = c.Read(b[:]) // the old never writes again: this returns when it goes away
		close(gone)
	}()
	type result struct {
		c   *net.UnixConn
		err error
	}
	res := make(chan result, 1)
	go func() {
		hc, err := ln.AcceptUnix()
		res <- result{hc, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-gone:
		// If it connected just before leaving, keep the connection: the
		// manifest read will tell. A connection already queued is taken
		// within goneAcceptGrace (a deadline of now would fail the pending
		// accept before it looked); at the deadline, the accept's error says so.
		ln.SetDeadline(time.Now().Add(goneAcceptGrace))
		if r = <-res; r.err != nil && !errors.Is(watchErr, os.ErrDeadlineExceeded) {
			r.err = errors.New("the old process closed the reconfig connection")
		}
	}
	c.SetReadDeadline(time.Now())
	<-gone
	return r.c, r.err
}

// stepError names what the old process failed to do and why.
func (u *Upgrade) stepError(what string, timeout time.Duration, err error) error {
	return stepError("old", u.oldPID, what, timeout, err)
}

// stepError names what the peer (the "old" or the "new" process, pid)
// failed to do within a handoff of timeout, and why. Both sides' steps
// say it the same way.
func stepError(peer string, pid any, what string, timeout time.Duration, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("reconfig: %s process (pid %v) did not %s within the %s handoff deadline: %w", peer, pid, what, timeout, err)
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("connection closed")
	}
	return fmt.Errorf("reconfig: %s process (pid %v) did not %s: %w", peer, pid, what, err)
}

// sendNack tells the old process why we give up, if it still listens.
func sendNack(c *net.UnixConn, pid int, reason error) {
	msg := "unknown"
	if reason != nil {
		msg = wire.Bound(reason.Error(), maxNackReason)
	}
	p, _ := json.Marshal(nackMsg{PID: pid, Reason: msg})
	c.SetWriteDeadline(time.Now().Add(nackWriteTimeout))
	writeFrame(c, typeNack, 0, p, nil)
}

// Fresh reports whether no process was running: there is nothing to inherit.
func (u *Upgrade) Fresh() bool { return u.fresh }

// OldPID is the pid of the process handing over as this process sees it,
// 0 on a fresh start — and 0 for a process in another PID namespace, which
// the kernel cannot name here: its own pid is Manifest().PID.
func (u *Upgrade) OldPID() int { return u.oldPID }

// AckBy is when the old process stops waiting for our ack, on this
// process's clock (from Manifest.AckTimeout; zero on a fresh start).
func (u *Upgrade) AckBy() time.Time { return u.ackBy }

// Manifest returns the received manifest (zero on a fresh start).
func (u *Upgrade) Manifest() Manifest { return u.manifest }

// Sockets returns the inherited sockets, one per manifest entry, in order.
// The Upgrade owns them and closes every one in Ack or Fail, so take what
// you need (net.FileListener makes its own copy) before acking.
func (u *Upgrade) Sockets() []ident.Socket {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]ident.Socket(nil), u.sockets...)
}

// Ack tells the old process we are serving: it stops accepting and drains.
// Ack refuses once the old process's ack deadline has passed, since it will
// have gone back to serving. On error the old process carries on: call
// Fail and exit. Every inherited file is closed.
func (u *Upgrade) Ack(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.fresh:
		return errors.New("reconfig: ack: fresh start, nobody to ack")
	case u.failed:
		return errors.New("reconfig: ack: upgrade already failed")
	case u.acked:
		return errors.New("reconfig: ack: already acked")
	}
	u.closeFiles()
	if dl := u.ackBy; !dl.IsZero() && time.Now().After(dl) {
		return fmt.Errorf("reconfig: ack: the old process (pid %d) stopped waiting at %s", u.oldPID, dl.Format(time.RFC3339Nano))
	}
	deadline := time.Now().Add(DefaultHandoffTimeout)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	stop := context.AfterFunc(ctx, func() { u.conn.SetWriteDeadline(time.Now()) })
	defer stop()
	u.conn.SetWriteDeadline(deadline)
	p, _ := json.Marshal(ackMsg{PID: u.pid, Migration: u.targets, Watch: true, Dropped: u.dropped})
	u.ackWritten = true
	if err := writeFrame(u.conn, typeAck, 0, p, nil); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			// The old process shut its reading: it settled the handoff
			// without our ack (an abort follows: it serves on), or it is
			// gone (its end closed, no abort).
			u.ackAborted, u.ackFailedClosed = u.readAbort()
		}
		if u.ackAborted {
			return fmt.Errorf("reconfig: send ack to old process (pid %v): it called the handoff off and serves on: %s", u.oldLabel(), u.abortReason)
		}
		return fmt.Errorf("reconfig: send ack to old process (pid %v): %w", u.oldLabel(), err)
	}
	u.conn.SetWriteDeadline(time.Time{})
	u.acked = true
	u.follower = NewFollower(u.conn, u.oldPID, u.handler, u.log.WithField("new_pid", u.pid))
	u.log.WithFields(logrus.Fields{"old_pid": u.oldLabel(), "new_pid": u.pid}).Info("acked: old process stops accepting")
	return nil
}

// readAbort reads, bounded, what the old process sent after it stopped
// taking our ack: an abort (it serves on) or the end of the stream (it is
// gone). Neither within the bound (it is alive but slow): not gone.
func (u *Upgrade) readAbort() (aborted, closed bool) {
	u.conn.SetReadDeadline(time.Now().Add(nackWriteTimeout))
	defer u.conn.SetReadDeadline(time.Time{})
	d := newDecoder(u.conn)
	for {
		f, err := d.Next()
		if err != nil {
			return false, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		}
		f.CloseFDs()
		if f.Type == typeAbort {
			var m nackMsg
			if decodePayload(f, &m) == nil {
				u.abortReason = wire.Bound(m.Reason, maxNackReason)
			}
			return true, false
		}
	}
}

// DropListeners names, before Ack, the inherited listeners this process
// does not serve (closed here): the ack tells the old process to close
// them too. At most one per manifest entry is kept.
func (u *Upgrade) DropListeners(specs []ident.Spec) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.dropped = append([]ident.Spec(nil), specs[:min(len(specs), len(u.manifest.Entries))]...)
}

// PredecessorGone reports, after a failed Ack, whether the old process went
// away before reading our ack — it died, or stopped for good — so that
// this process, already serving, carries on alone (Orphan) rather than
// give up. The handoff connection tells: the ack could not be written
// because the old process had closed its end, or it has closed it since —
// and it did not call the handoff off first (an abort: it had shut its
// reading at its ack deadline, found no ack and serves on).
// An ack refused before it was written (past the old process's deadline:
// it serves on) says nothing of the sort: false. It needs no pid, so it
// holds across PID namespaces, where the old process's pid reads 0 here.
func (u *Upgrade) PredecessorGone() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fresh || u.acked || !u.ackWritten || u.conn == nil || u.ackAborted {
		return false
	}
	return u.ackFailedClosed || wire.PeerClosed(u.conn)
}

// Fail abandons the upgrade: it sends the old process a nack naming reason
// (if not yet acked), closes every inherited file and releases the lock.
// reconfig.sock is never touched, so the old process can be upgraded again
// at once. Fail is idempotent and does nothing after TakeOver.
func (u *Upgrade) Fail(reason error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed || u.tookOver {
		return
	}
	u.failed = true
	if u.conn != nil && !u.acked {
		sendNack(u.conn, u.pid, reason)
	}
	u.releaseLocked()
}

// release frees everything (Begin's error path).
func (u *Upgrade) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.failed = true
	u.releaseLocked()
}

func (u *Upgrade) releaseLocked() {
	u.closeFiles()
	if u.conn != nil {
		u.conn.Close()
	}
	if u.lock != nil {
		u.lock.Close()
		u.lock = nil
	}
	u.followOnce.Do(func() { close(u.followDone) })
}

func (u *Upgrade) closeFiles() {
	for _, f := range u.sockets {
		f.File.Close()
	}
}

// Orphan records that the old process went away before it read our ack
// (check with a liveness test after a failed Ack): this process, already
// serving every proxy socket, is now the only one. TakeOver then proceeds
// as after an ack, so that the survivor owns reconfig.sock and the lock is
// freed: it can be upgraded at once. There is nothing to follow.
func (u *Upgrade) Orphan() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fresh || u.acked || u.failed || u.orphaned {
		return
	}
	u.orphaned = true
	u.closeFiles()
	if u.conn != nil {
		u.conn.Close()
	}
	u.followOnce.Do(func() { close(u.followDone) })
	u.log.WithFields(logrus.Fields{"old_pid": u.oldLabel(), "new_pid": u.pid}).Warn("old process went away before our ack: carrying on alone")
}

// followed reports whether the predecessor is done with us (its bye, the end
// of Follow, or no predecessor at all).
func (u *Upgrade) followed() bool {
	select {
	case <-u.followDone:
		return true
	default:
		return false
	}
}

// Release tells a watching predecessor that we stop or hand over on purpose:
// it must not take over again when we go. Idempotent; nothing before the ack.
func (u *Upgrade) Release() {
	u.mu.Lock()
	f := u.follower
	u.mu.Unlock()
	if f != nil {
		f.Release()
	}
}

// TakeOver binds reconfig.sock for this process (replacing the old path
// atomically), releases the upgrade lock and starts a Server on it. Call it
// after Ack, or at once after a fresh start once the listeners are open.
// Until Follow returns, the Server answers further upgrade requests with
// "busy": the predecessor is still draining into our counters.
func (u *Upgrade) TakeOver(cfg ServerConfig) (*Server, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.failed:
		return nil, errors.New("reconfig: take over: upgrade failed")
	case u.tookOver:
		return nil, errors.New("reconfig: take over: already done")
	case !u.fresh && !u.acked && !u.orphaned:
		return nil, errors.New("reconfig: take over: not acked")
	}
	var pred *Upgrade
	if !u.fresh {
		pred = u
	}
	srv, err := listenReconfig(u.dir, u.pid, u.euid, pred, cfg)
	if err != nil {
		// Nobody can upgrade through us; holding the lock would only make
		// every later attempt say "in progress" instead of the real cause.
		if u.lock != nil {
			u.lock.Close()
			u.lock = nil
		}
		return nil, err
	}
	u.tookOver = true
	u.lock.Close()
	u.lock = nil
	u.log.WithField("new_pid", u.pid).Info("took over reconfig.sock")
	return srv, nil
}

// Follow reads what the old process sends while it drains (see Follower),
// until its bye (nil), the connection closes without a bye (an error), or
// ctx ends; h.Bye runs before the bye is answered (see Follower.Follow).
// Connections the old process moves go to the AcceptConnections
// handler (refused without one). Call it after Ack; the Server answers
// "busy" until it returns.
func (u *Upgrade) Follow(ctx context.Context, h FollowHooks) error {
	u.mu.Lock()
	f := u.follower
	u.mu.Unlock()
	if f == nil {
		return errors.New("reconfig: follow: not acked")
	}
	defer u.followOnce.Do(func() { close(u.followDone) })
	return f.Follow(ctx, h)
}

func orDiscard(log *logrus.Entry) *logrus.Entry {
	if log != nil {
		return log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

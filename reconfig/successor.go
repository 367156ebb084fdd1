package reconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
)

// byeTimeout bounds the wait, after bye, for the successor to say it has
// handled it (done), so that nothing it shows about us (draining_pid) is
// stale once we exit.
const byeTimeout = 2 * time.Second

// StreamConfig tunes the drain stream.
type StreamConfig struct {
	Log *logrus.Entry
	// WriteTimeout bounds each write (DefaultHandoffTimeout when zero).
	WriteTimeout time.Duration
	// MigrateTimeout bounds one Migrate batch (DefaultMigrateTimeout when zero).
	MigrateTimeout time.Duration
	// MaxCountsFrame is the largest counters frame SendCounters writes
	// (the frame type's limit when zero or above it; tests set less).
	MaxCountsFrame int
	// ReportedPID is the successor's pid as it reports itself: logged in
	// place of the pid when that is 0 (another PID namespace).
	ReportedPID int
	// Now and After are the clock and timers the stream is timed on
	// (time.Now and time.After when nil; tests pass fakes).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// SettleTimeout bounds how long Migrate waits, past a batch's own
	// timeout, for a slow successor's answer before it gives the batch up
	// as unsettled (DefaultHandoffTimeout when zero; see
	// ErrMigrationUnsettled).
	SettleTimeout time.Duration
}

func (c StreamConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c StreamConfig) after(d time.Duration) <-chan time.Time {
	if c.After != nil {
		return c.After(d)
	}
	return time.After(d)
}

func (c StreamConfig) maxCountsFrame() int {
	if c.MaxCountsFrame <= 0 || c.MaxCountsFrame > maxCountersSize {
		return maxCountersSize
	}
	return c.MaxCountsFrame
}

// Successor is the old process's end of the drain stream: the connection to
// the process that took over, after its ack (MOSN style: the handoff
// connection; Envoy style: the socket pair the child sent with its drain
// request). On it the old process sends counters, moves connections and
// says bye; it learns when the successor has handled the bye (Done), asks
// to be left alone (Released) or dies (Gone). Safe for concurrent use.
type Successor struct {
	conn    *net.UnixConn
	pid     int
	targets []MigrationTarget
	dropped []ident.Spec
	watch   bool
	cfg     StreamConfig
	log     *logrus.Entry

	wmu     sync.Mutex // writes
	wclosed bool       // our write side is shut (a write failed, or Close)
	closed  bool       // Close was called

	// Migration: one batch at a time, under migMu.
	migMu     sync.Mutex
	batch     uint64
	migBroken error
	results   chan resultMsg

	// ended: the stream can no longer be read (for any reason); gone: it
	// ended because the successor's end was closed (EOF or a reset: its
	// kernel closed it, as on its exit or death).
	done, released, ended, gone       chan struct{}
	doneOnce, releasedOnce, endedOnce sync.Once
	endErr                            error
}

// NewSuccessor starts the old side of a drain stream on conn, to the
// successor pid, which takes connections for targets and, with watch, keeps
// the stream open until it releases us (see Released). The Successor owns
// conn.
func NewSuccessor(conn *net.UnixConn, pid int, targets []MigrationTarget, watch bool, cfg StreamConfig) *Successor {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultHandoffTimeout
	}
	if cfg.MigrateTimeout <= 0 {
		cfg.MigrateTimeout = DefaultMigrateTimeout
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = DefaultHandoffTimeout
	}
	s := &Successor{
		conn: conn, pid: pid, targets: validTargets(targets), watch: watch, cfg: cfg,
		log:     orDiscard(cfg.Log).WithField("new_pid", wire.PIDLabel(pid, cfg.ReportedPID)),
		results: make(chan resultMsg, 4),
		done:    make(chan struct{}), released: make(chan struct{}), ended: make(chan struct{}), gone: make(chan struct{}),
	}
	go s.read()
	return s
}

// PID is the successor's pid as this process sees it: 0 for a process in
// another PID namespace (see ReportedPID).
func (s *Successor) PID() int { return s.pid }

// ReportedPID is the successor's pid as it reports itself (0 if it did
// not): a number that means something in its own PID namespace.
func (s *Successor) ReportedPID() int { return s.cfg.ReportedPID }

// Watchable reports whether the successor keeps the stream open after bye
// until it releases us, so that its death can be told from its exit.
func (s *Successor) Watchable() bool { return s.watch }

// Dropped returns the listeners of our manifest that the successor does not
// serve (see ackMsg.Dropped): nothing else will accept on them.
func (s *Successor) Dropped() []ident.Spec { return append([]ident.Spec(nil), s.dropped...) }

// MigrationTargets returns the listeners the successor takes connections
// for; nil when it takes none (an older version, or migration off).
func (s *Successor) MigrationTargets() []MigrationTarget {
	return append([]MigrationTarget(nil), s.targets...)
}

// Done is closed once the successor has handled our bye, or has gone.
func (s *Successor) Done() <-chan struct{} { return s.done }

// Released is closed when the successor tells us to stop watching it: it is
// stopping on purpose or being upgraded itself.
func (s *Successor) Released() <-chan struct{} { return s.released }

// Gone is closed when the successor's end of the stream was closed: a read
// found EOF or a reset, which only its kernel gives — on its exit or its
// death. A Watchable successor that has not released us is then dead.
// Nothing this process does closes Gone: a write of ours that fails or times
// out (a successor stopped or starved, not reading) shuts only our write
// side, and the successor, once it reads on, sees the end of the stream,
// releases us and closes; garbage from it stops the reading but proves
// nothing of its death. See Ended.
func (s *Successor) Gone() <-chan struct{} { return s.gone }

// Ended is closed when the stream can no longer be read: Gone, garbage, or
// Close.
func (s *Successor) Ended() <-chan struct{} { return s.ended }

// Err is why the stream ended (after Ended).
func (s *Successor) Err() error {
	<-s.ended
	return s.endErr
}

// read takes every frame the successor sends: migration results (for the
// waiting Migrate), done and release. It ends when the stream breaks.
func (s *Successor) read() {
	dec := newDecoder(s.conn)
	for {
		f, err := dec.Next()
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				s.end(fmt.Errorf("reconfig: stream to new process (pid %d) closed here", s.pid), false)
			case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
				s.end(fmt.Errorf("reconfig: new process (pid %d) closed the connection", s.pid), true)
			default:
				s.end(fmt.Errorf("reconfig: from new process (pid %d): %w", s.pid, err), false)
			}
			return
		}
		f.CloseFDs()
		switch f.Type {
		case typeConnResult:
			r, err := parseResult(f.Payload)
			if err != nil {
				s.end(fmt.Errorf("reconfig: new process (pid %d): %w", s.pid, err), false)
				return
			}
			select {
			case s.results <- r:
			default: // nobody waits this long: an answer to a batch given up on
			}
		case typeDone:
			s.doneOnce.Do(func() { close(s.done) })
		case typeRelease:
			s.releasedOnce.Do(func() { close(s.released) })
		default:
			s.end(fmt.Errorf("reconfig: new process (pid %d): %w", s.pid, badFrame("unexpected %s frame", typeName(f.Type))), false)
			return
		}
	}
}

// end records that the stream can no longer be read, and why; closed says
// the successor's end was closed (see Gone).
func (s *Successor) end(err error, closed bool) {
	s.endedOnce.Do(func() {
		s.endErr = err
		if closed {
			close(s.gone)
		}
		close(s.ended)
		s.doneOnce.Do(func() { close(s.done) })
	})
}

// SendCounters sends one push of counter and histogram increments to the
// successor, which adds them to its own. Send what grew since the last call
// (sample.Delta and histsample.Delta against the previous snapshot; the first
// base is the manifest's), not totals. A push too large for one frame goes
// as several parts (Counts.More), written back to back; a single series too
// large for a frame on its own is left out, with a warning. On error nothing
// more can be sent on the stream.
func (s *Successor) SendCounters(c Counts) error {
	parts, dropped := splitCounts(c, s.cfg.maxCountsFrame())
	for _, d := range dropped {
		s.log.WithField("series", wire.Bound(d, 200)).Warn("a series too large for a counters frame is not carried to the new process")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, p := range parts {
		if err := s.writeLocked(typeCounters, 0, p, nil); err != nil {
			return err
		}
	}
	return nil
}

// MigrationDone tells the successor that the connection migration is over
// (optional: an older successor skips it).
func (s *Successor) MigrationDone(m MigrationDone) error {
	p, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("reconfig: encode migration done: %w", err)
	}
	return s.write(typeMigrated, flagOptional, p, nil)
}

// splitCounts encodes c as frames of at most limit bytes (see wire.Split:
// its series in consecutive runs, every part but the last marked More), and
// names the series too large for a frame on their own, which are left out.
func splitCounts(c Counts, limit int) (parts [][]byte, dropped []string) {
	nc := len(c.Counters)
	parts, idx := wire.Split(nc+len(c.Histograms), limit, c.More, func(lo, hi int, more bool) ([]byte, error) {
		part := Counts{More: more}
		part.Counters = c.Counters[min(lo, nc):min(hi, nc)]
		part.Histograms = c.Histograms[max(lo, nc)-nc : max(hi, nc)-nc]
		return json.Marshal(part)
	})
	for _, i := range idx {
		if i < nc {
			dropped = append(dropped, c.Counters[i].Key())
		} else {
			dropped = append(dropped, c.Histograms[i-nc].Describe())
		}
	}
	return parts, dropped
}

// Bye tells the successor that nothing more follows and waits (bounded) for
// it to say it has handled that, so that once we exit it no longer shows us
// as draining. The stream stays open: Close it after the watch.
func (s *Successor) Bye() error {
	p, _ := json.Marshal(byeMsg{PID: os.Getpid()})
	if err := s.write(typeBye, 0, p, nil); err != nil {
		return err
	}
	t := time.NewTimer(byeTimeout)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		return fmt.Errorf("reconfig: new process (pid %d) did not confirm our bye within %s", s.pid, byeTimeout)
	}
	return nil
}

// Close closes the stream.
func (s *Successor) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed, s.wclosed = true, true
	return s.conn.Close()
}

// shutWriteLocked ends our side of the stream after a write failed or
// timed out: a partial frame may be on it, so nothing more is written. Only
// the write side is shut: the successor, alive but slow, reads what we sent
// and then the end of the stream (and releases us); the reading here goes
// on, so that its answers, its release or its death are still seen.
func (s *Successor) shutWriteLocked() {
	if s.wclosed {
		return
	}
	s.wclosed = true
	_ = s.conn.CloseWrite()
}

func (s *Successor) write(typ msgType, flags uint8, p []byte, fds []int) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(typ, flags, p, fds)
}

func (s *Successor) writeLocked(typ msgType, flags uint8, p []byte, fds []int) error {
	if s.wclosed {
		return ErrNotHandedOff
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	err := writeFrame(s.conn, typ, flags, p, fds)
	s.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		// A partial frame may be on the stream: nothing after it can be read.
		s.shutWriteLocked()
		return fmt.Errorf("reconfig: send %s to new process (pid %d): %w", typeName(typ), s.pid, err)
	}
	return nil
}

// Migrate moves a batch of connections to the successor, in two phases: it
// sends every offer with its sockets and then a commit; the successor holds
// them without serving and answers with a result, after which it serves the
// ones it accepted. The batch has a time limit (StreamConfig.MigrateTimeout),
// which each side measures on its own clock: the successor accepts nothing
// once it has passed there.
//
// On success every offered ID is in exactly one of Accepted (close this
// process's copies of those sockets, a plain close) and Refused (resume
// them). An error that is not ErrMigrationUnsettled means the successor
// serves none of them: resume them all — the batch did not reach it whole,
// or its end of the stream closed before a result came (the stream is in
// order: a result it sent comes first). A successor that is alive but does
// not answer (stopped, starved) is waited for, up to the time limit, a
// grace and StreamConfig.SettleTimeout; then ErrMigrationUnsettled: it may
// yet serve them, so the caller closes its copies and resumes none. After
// an error every later Migrate fails at once. Offers' Files stay the
// caller's. One batch runs at a time.
func (s *Successor) Migrate(offers []ConnOffer) (MigrationResult, error) {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	switch {
	case s.migBroken != nil:
		return MigrationResult{}, fmt.Errorf("reconfig: migration to new process (pid %d) failed earlier: %w", s.pid, s.migBroken)
	case len(s.targets) == 0:
		return MigrationResult{}, fmt.Errorf("reconfig: new process (pid %d) takes no connections", s.pid)
	case len(offers) == 0:
		return MigrationResult{Refused: map[uint64]string{}}, nil
	case len(offers) > maxBatchOffers:
		return MigrationResult{}, fmt.Errorf("reconfig: migrate: %d offers in one batch, over the limit of %d", len(offers), maxBatchOffers)
	}
	if err := checkOffers(offers, s.targets); err != nil {
		return MigrationResult{}, err
	}

	// Everything is encoded before anything is sent: a batch goes out whole
	// or its commit never does.
	s.batch++
	batch := s.batch
	start := s.cfg.now()
	timeout := s.cfg.MigrateTimeout
	wall := start.Add(timeout).Round(0) // for a successor of an earlier version
	payloads := make([][]byte, len(offers))
	fds := make([][]int, len(offers))
	ids := make([]uint64, len(offers))
	for i := range offers {
		o := offers[i]
		o.Timeout, o.Deadline = timeout, wall
		p, err := json.Marshal(o)
		if err != nil {
			return MigrationResult{}, fmt.Errorf("reconfig: encode connection offer %d: %w", o.ID, err)
		}
		payloads[i], ids[i] = p, o.ID
		for _, f := range o.Files {
			fd, err := wire.RawFD(f)
			if err != nil {
				return MigrationResult{}, fmt.Errorf("reconfig: connection offer %d: %w", o.ID, err)
			}
			fds[i] = append(fds[i], fd)
		}
	}
	commit, err := json.Marshal(commitMsg{Batch: batch, IDs: ids, Timeout: timeout, Deadline: wall})
	if err != nil {
		return MigrationResult{}, fmt.Errorf("reconfig: encode migration commit: %w", err)
	}
	if err := s.sendBatch(payloads, fds, commit); err != nil {
		s.migBroken = err
		return MigrationResult{}, err
	}
	runtime.KeepAlive(offers)

	res, err := s.awaitResult(batch, timeout+resultGrace)
	if err != nil {
		s.migBroken = err
		return MigrationResult{}, err
	}
	return collate(res, ids), nil
}

// checkOffers checks what the caller offers before anything is sent.
func checkOffers(offers []ConnOffer, targets []MigrationTarget) error {
	ok := make(map[MigrationTarget]bool, len(targets))
	for _, t := range targets {
		ok[t] = true
	}
	seen := make(map[uint64]bool, len(offers))
	for _, o := range offers {
		switch {
		case o.ID == 0 || seen[o.ID]:
			return fmt.Errorf("reconfig: migrate: offer id %d is zero or repeated", o.ID)
		case connFDs(o.Kind) != len(o.Files):
			return fmt.Errorf("reconfig: migrate: offer %d: a %q connection with %d sockets", o.ID, o.Kind, len(o.Files))
		case !ok[MigrationTarget{Listener: o.Listener, Kind: o.Kind}]:
			return fmt.Errorf("reconfig: migrate: offer %d: the new process takes no %s connections for listener %q", o.ID, o.Kind, o.Listener)
		}
		seen[o.ID] = true
	}
	return nil
}

// sendBatch writes the offers and the commit, under one hold of the write
// lock so that no counters push lands between them.
func (s *Successor) sendBatch(payloads [][]byte, fds [][]int, commit []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wclosed {
		return ErrNotHandedOff
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.MigrateTimeout))
	var err error
	for i := range payloads {
		if err = writeFrame(s.conn, typeConnOffer, flagOptional, payloads[i], fds[i]); err != nil {
			break
		}
	}
	if err == nil {
		err = writeFrame(s.conn, typeConnCommit, flagOptional, commit, nil)
	}
	s.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		// The commit did not go out whole: the successor accepts none.
		s.shutWriteLocked()
		return fmt.Errorf("reconfig: send connection offers to new process (pid %d): %w", s.pid, err)
	}
	return nil
}

// awaitResult waits for the answer to batch: past due (on our clock) it
// warns and waits on, for SettleTimeout, before it gives up on a batch the
// successor may yet serve (ErrMigrationUnsettled). Answers to earlier
// batches are skipped.
func (s *Successor) awaitResult(batch uint64, due time.Duration) (resultMsg, error) {
	timer := s.cfg.after(due)
	late := false
	for {
		select {
		case r := <-s.results:
			if r.Batch == batch {
				return r, nil
			}
		case <-s.ended:
			// The reader passes every result on before the stream ends.
			for len(s.results) > 0 {
				if r := <-s.results; r.Batch == batch {
					return r, nil
				}
			}
			select {
			case <-s.gone:
				// In order on the stream: a result it sent would have come first.
				return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d) went away before answering migration batch %d: %w", s.pid, batch, s.endErr)
			default:
				return resultMsg{}, fmt.Errorf("%w: batch %d: the stream from the new process (pid %d) cannot be read: %w", ErrMigrationUnsettled, batch, s.pid, s.endErr)
			}
		case <-timer:
			if late {
				s.wmu.Lock()
				s.shutWriteLocked() // it reads the end of the stream once it reads on
				s.wmu.Unlock()
				return resultMsg{}, fmt.Errorf("%w: batch %d: the new process (pid %d) is alive but has not answered within %s", ErrMigrationUnsettled, batch, s.pid, due+s.cfg.SettleTimeout)
			}
			late = true
			s.log.WithField("batch", batch).Warn("migration: the new process has not answered in time; waiting for its answer before anything is resumed here")
			timer = s.cfg.after(s.cfg.SettleTimeout)
		}
	}
}

// collate turns a result into one verdict per offered id: an id the result
// does not name is refused; one it names but we did not offer is ignored.
func collate(r resultMsg, ids []uint64) MigrationResult {
	offered := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		offered[id] = true
	}
	out := MigrationResult{Refused: map[uint64]string{}}
	accepted := map[uint64]bool{}
	for _, id := range r.Accepted {
		if offered[id] {
			accepted[id] = true
			out.Accepted = append(out.Accepted, id)
		}
	}
	for _, x := range r.Refused {
		if offered[x.ID] {
			out.Refused[x.ID] = x.Reason
		}
	}
	for _, id := range ids {
		if _, ok := out.Refused[id]; !ok && !accepted[id] {
			out.Refused[id] = "not answered"
		}
	}
	return out
}

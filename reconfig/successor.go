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
	watch   bool
	cfg     StreamConfig
	log     *logrus.Entry

	wmu    sync.Mutex // writes
	closed bool

	// Migration: one batch at a time, under migMu.
	migMu     sync.Mutex
	batch     uint64
	migBroken error
	results   chan resultMsg

	done, released, gone             chan struct{}
	doneOnce, releasedOnce, goneOnce sync.Once
	goneErr                          error
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
	s := &Successor{
		conn: conn, pid: pid, targets: validTargets(targets), watch: watch, cfg: cfg,
		log:     orDiscard(cfg.Log).WithField("new_pid", wire.PIDLabel(pid, cfg.ReportedPID)),
		results: make(chan resultMsg, 4),
		done:    make(chan struct{}), released: make(chan struct{}), gone: make(chan struct{}),
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

// Gone is closed when the stream broke: EOF, a reset or garbage. A
// Watchable successor that has not released us is then dead.
func (s *Successor) Gone() <-chan struct{} { return s.gone }

// Err is why the stream broke (after Gone).
func (s *Successor) Err() error {
	<-s.gone
	return s.goneErr
}

// read takes every frame the successor sends: migration results (for the
// waiting Migrate), done and release. It ends when the stream breaks.
func (s *Successor) read() {
	dec := newDecoder(s.conn)
	for {
		f, err := dec.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("reconfig: new process (pid %d) closed the connection", s.pid)
			} else {
				err = fmt.Errorf("reconfig: from new process (pid %d): %w", s.pid, err)
			}
			s.setGone(err)
			return
		}
		f.CloseFDs()
		switch f.Type {
		case typeConnResult:
			r, err := parseResult(f.Payload)
			if err != nil {
				s.setGone(fmt.Errorf("reconfig: new process (pid %d): %w", s.pid, err))
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
			s.setGone(fmt.Errorf("reconfig: new process (pid %d): %w", s.pid, badFrame("unexpected %s frame", typeName(f.Type))))
			return
		}
	}
}

func (s *Successor) setGone(err error) {
	s.goneOnce.Do(func() {
		s.goneErr = err
		close(s.gone)
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
	s.closed = true
	return s.conn.Close()
}

func (s *Successor) write(typ msgType, flags uint8, p []byte, fds []int) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(typ, flags, p, fds)
}

func (s *Successor) writeLocked(typ msgType, flags uint8, p []byte, fds []int) error {
	if s.closed {
		return ErrNotHandedOff
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	err := writeFrame(s.conn, typ, flags, p, fds)
	s.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		// A partial frame may be on the stream: nothing after it can be read.
		s.closed = true
		s.conn.Close()
		return fmt.Errorf("reconfig: send %s to new process (pid %d): %w", typeName(typ), s.pid, err)
	}
	return nil
}

// Migrate moves a batch of connections to the successor, in two phases: it
// sends every offer with its sockets and then a commit; the successor holds
// them without serving and answers with a result, after which it serves the
// ones it accepted. The batch has a deadline (StreamConfig.MigrateTimeout):
// the successor never answers after it, and Migrate waits for the answer
// until a second past it.
//
// On success every offered ID is in exactly one of Accepted (close this
// process's copies of those sockets, a plain close) and Refused (resume
// them). On error the successor serves none of them: resume them all. After
// an error (timeout, the stream broke, a garbled answer) every later Migrate
// fails at once. Offers' Files stay the caller's. One batch runs at a time.
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
	deadline := time.Now().Add(s.cfg.MigrateTimeout)
	payloads := make([][]byte, len(offers))
	fds := make([][]int, len(offers))
	ids := make([]uint64, len(offers))
	for i := range offers {
		o := offers[i]
		o.Deadline = deadline
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
	commit, err := json.Marshal(commitMsg{Batch: batch, IDs: ids, Deadline: deadline})
	if err != nil {
		return MigrationResult{}, fmt.Errorf("reconfig: encode migration commit: %w", err)
	}
	if err := s.sendBatch(payloads, fds, commit); err != nil {
		s.migBroken = err
		return MigrationResult{}, err
	}
	runtime.KeepAlive(offers)

	res, err := s.awaitResult(batch, deadline.Add(resultGrace))
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
	if s.closed {
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
		s.closed = true
		s.conn.Close()
		return fmt.Errorf("reconfig: send connection offers to new process (pid %d): %w", s.pid, err)
	}
	return nil
}

// awaitResult waits for the answer to batch until deadline. Answers to
// earlier batches are skipped.
func (s *Successor) awaitResult(batch uint64, deadline time.Time) (resultMsg, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		select {
		case r := <-s.results:
			if r.Batch == batch {
				return r, nil
			}
		case <-s.gone:
			return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d) went away before answering migration batch %d: %w", s.pid, batch, s.goneErr)
		case <-t.C:
			return resultMsg{}, fmt.Errorf("reconfig: new process (pid %d) did not answer migration batch %d by its deadline", s.pid, batch)
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

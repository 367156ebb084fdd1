package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/reconfig"
	"github.com/mosnlite/mosnlite/service/stats"
)

// Start brings the process up: it finds out whether a predecessor runs in the
// uds_dir and takes its sockets over, or binds fresh; it serves on every
// listener; then it acks the predecessor and becomes the one a successor will
// contact. On any error before the ack everything started is rolled back and
// the predecessor is told why; it carries on untouched.
func (s *Server) Start(ctx context.Context) error {
	began := s.clock()
	hctx, cancel := context.WithTimeout(ctx, s.handoffTimeout())
	defer cancel()
	if !s.opts.ReadyBy.IsZero() {
		// Whoever started us stops waiting then: better to fail than to take
		// over after it has reported failure.
		var c2 context.CancelFunc
		hctx, c2 = context.WithDeadline(hctx, s.opts.ReadyBy)
		defer c2()
	}

	up, err := reconfig.Begin(hctx, s.udsDir, s.opts.Log.WithField("component", "reconfig"))
	if err != nil {
		return fmt.Errorf("server: start: %w", err)
	}
	if !up.Fresh() {
		// The predecessor stops waiting for our ack at its deadline; every
		// step before the ack must end before it.
		if m := up.Manifest(); !m.AckDeadline.IsZero() {
			var c3 context.CancelFunc
			hctx, c3 = context.WithDeadlineCause(hctx, m.AckDeadline.Add(-ackMargin),
				fmt.Errorf("the predecessor (pid %d) stops waiting for our ack at %s", m.PID, m.AckDeadline.Format(time.RFC3339Nano)))
			defer c3()
		}
	}
	if err := s.startWith(hctx, up); err != nil {
		up.Fail(err)
		return err
	}
	var adopt *adopter
	if !up.Fresh() {
		// Connections the predecessor moves go to the listener of the same
		// name and kind; it learns which with the ack.
		if targets, a := s.migrationTargets(); len(targets) > 0 {
			if err := up.AcceptConnections(targets, a); err != nil {
				s.log.WithError(err).Warn("handoff: connection migration off")
			} else {
				adopt = a
			}
		}
		if err := up.Ack(hctx); err != nil {
			if pid := up.OldPID(); processAlive(pid) {
				// The predecessor gave up on us and serves on: undo.
				err = fmt.Errorf("server: handoff: ack to predecessor (pid %d): %w", pid, err)
				s.abandon(err)
				up.Fail(err)
				return err
			}
			// The predecessor is gone: this process already serves every
			// proxy socket, so it carries on.
			s.log.WithError(err).Warn("handoff: predecessor exited before our ack; serving")
		}
		s.m.upgrades.Inc()
		s.m.lastHandoffSeconds.Set(s.clock().Sub(began).Seconds())
	}
	rs, err := up.TakeOver(s.reconfigHooks())
	if err != nil {
		if up.Fresh() {
			// Nothing is lost by failing a fresh start, and a process that
			// can never be upgraded is not what was asked for.
			err = fmt.Errorf("server: start: %w", err)
			s.abandon(err)
			return err
		}
		// After the ack the predecessor no longer accepts: stopping now would
		// be an outage. Serve, and say loudly that no upgrade is possible.
		s.log.WithError(err).Error("cannot take over reconfig.sock: this process cannot be upgraded")
	}
	s.mu.Lock()
	s.reconfigServer = rs
	s.mu.Unlock()
	if !up.Fresh() {
		// The service ports (metrics above all) start serving here only once
		// the predecessor has stopped accepting and sent what it counted
		// since the manifest: a scrape never sees a counter go backwards.
		first := make(chan struct{})
		go s.followPredecessor(ctx, up, first, adopt)
		select {
		case <-first:
		case <-time.After(s.handoffTimeout()):
			s.log.Warn("handoff: predecessor sent no counters after the ack; serving the service ports anyway")
		}
		s.serveParts(func(p *part) bool { return p.svc != nil })
	}
	s.mu.Lock()
	gen := s.generation
	s.mu.Unlock()
	s.setState(StateRunning)
	s.log.WithFields(map[string]interface{}{"generation": gen, "handoff_seconds": s.clock().Sub(began).Seconds()}).Info("ready")
	return nil
}

// followSlack is added to the predecessor's drain bound before this process
// stops waiting for its goodbye.
const followSlack = 5 * time.Second

// ackMargin is how much before the predecessor's ack deadline the start must
// be done, leaving time for the ack itself to travel.
const ackMargin = 250 * time.Millisecond

// processAlive reports whether pid still runs (a zombie counts as gone).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return !ok || !strings.HasPrefix(rest, "Z")
}

// abandon undoes a start that served but will not go on: stop accepting,
// let what was accepted finish briefly, close everything.
func (s *Server) abandon(why error) {
	s.log.WithError(why).Error("start abandoned: closing what this process opened")
	ctx, cancel := context.WithTimeout(context.Background(), min(s.gracefulTimeout(), s.handoffTimeout()))
	defer cancel()
	s.drain(ctx, nil)
	s.mu.Lock()
	set := s.listeners
	s.mu.Unlock()
	if set != nil {
		_ = set.CloseAll()
	}
	s.m.live.Set(0)
}

// startWith opens every listener (inherited or fresh) and serves on it.
func (s *Server) startWith(ctx context.Context, up *reconfig.Upgrade) (err error) {
	var inherited []listener.Inherited
	if !up.Fresh() {
		m := up.Manifest()
		s.log.WithFields(map[string]interface{}{
			"old_pid": m.PID, "new_pid": s.opts.PID, "generation": m.Generation + 1, "fds": len(m.Entries),
		}).Info("handoff: received listeners from predecessor")
		for _, f := range up.Files() {
			e := f.Entry
			inherited = append(inherited, listener.Inherited{
				Spec: listener.Spec{Name: e.Name, Kind: listener.Kind(e.Kind), Network: e.Network, Address: e.Address},
				File: f.File,
			})
		}
		s.reg.AddCounters(m.Counters)
		s.mu.Lock()
		s.generation = int(m.Generation) + 1
		if !m.StartTime.IsZero() {
			s.firstStart = m.StartTime
		}
		s.drainingPID = m.PID
		s.mu.Unlock()
	}
	s.m.generation.Set(float64(s.generation))
	set := listener.NewSet(inherited, s.opts.Log.WithField("component", "listener"))
	defer func() {
		if err != nil {
			s.rollback(set)
		}
	}()

	clusters, parts, err := s.build()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.parts = parts
	s.listeners = set
	s.mu.Unlock()
	clusters.Start(context.WithoutCancel(ctx))
	s.clusters = clusters

	nInherited := 0
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("server: start: handoff deadline: %w", context.Cause(ctx))
		}
		ln, err := set.Open(p.spec)
		if err != nil {
			return fmt.Errorf("server: open %s: %w", p.spec, err)
		}
		p.ln = ln
		if ln.Inherited {
			nInherited++
		}
	}
	for _, spec := range set.CloseUnclaimed() {
		s.log.WithField("listener", spec.String()).Info("inherited listener not in config: closed here, stops with the predecessor")
	}
	s.m.listenersInherited.Set(float64(nInherited))
	// A fresh process serves everything now; a successor serves its service
	// ports only after the ack (see Start).
	s.serveParts(func(p *part) bool { return up.Fresh() || p.proxy != nil })
	s.m.live.Set(1)
	return nil
}

// serveParts starts serving the parts that want says, in config order.
func (s *Server) serveParts(want func(*part) bool) {
	s.mu.Lock()
	parts := append([]*part(nil), s.parts...)
	s.mu.Unlock()
	for _, p := range parts {
		if p.serving || !want(p) {
			continue
		}
		p.serve(s.log)
		s.log.WithFields(map[string]interface{}{"listener": p.spec.Name, "kind": p.spec.Kind, "address": p.ln.Spec.Address, "inherited": p.ln.Inherited}).Info("serving")
	}
}

// rollback undoes a partial start: stop every part that started, close every
// socket this process opened. Inherited sockets are only this process's
// copies; the predecessor's stay open.
func (s *Server) rollback(set *listener.Set) {
	s.mu.Lock()
	parts := s.parts
	s.parts = nil
	s.mu.Unlock()
	for _, p := range parts {
		_ = p.stopAccepting()
		p.closeAll()
	}
	set.CloseAll()
	set.CloseUnclaimed()
	if s.clusters != nil {
		s.clusters.Close()
	}
}

// followPredecessor adds in what the draining predecessor still counts and
// clears the draining pid once it is gone.
func (s *Server) followPredecessor(ctx context.Context, up *reconfig.Upgrade, first chan<- struct{}, adopt *adopter) {
	var once sync.Once
	signal := func() { once.Do(func() { close(first) }) }
	defer signal()
	// The predecessor drains for at most its graceful_timeout; a predecessor
	// that hangs must not keep this process from being upgraded forever.
	bound := up.Manifest().DrainTimeout
	if bound <= 0 {
		bound = s.gracefulTimeout()
	}
	ctx, cancel := context.WithTimeout(ctx, bound+s.handoffTimeout()+followSlack)
	defer cancel()
	err := up.Follow(ctx, func(c []stats.Sample) {
		s.reg.AddCounters(c)
		signal()
	})
	s.mu.Lock()
	pid := s.drainingPID
	s.drainingPID = 0
	s.mu.Unlock()
	s.recordUpgrade(adopt)
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.WithError(err).WithField("old_pid", pid).Warn("predecessor connection ended without goodbye")
		return
	}
	log := s.log.WithField("old_pid", pid)
	if adopt != nil {
		n := adopt.total()
		log = log.WithFields(map[string]interface{}{"adopted_tcp": n["tcp"], "adopted_http": n["http"]})
	}
	log.Info("predecessor finished draining")
}

package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

	up, err := reconfig.Begin(hctx, s.udsDir, s.opts.Log.WithField("component", "reconfig"))
	if err != nil {
		return fmt.Errorf("server: start: %w", err)
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
			// The predecessor may be gone; either way this process already serves
			// every proxy socket, so it carries on.
			s.log.WithError(err).Warn("handoff: ack to predecessor failed; serving anyway")
		}
		s.m.upgrades.Inc()
		s.m.lastHandoffSeconds.Set(s.clock().Sub(began).Seconds())
	}
	rs, err := up.TakeOver(s.reconfigHooks())
	if err != nil {
		// Serving works; only future upgrades are affected. Say so loudly.
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
	s.ready = true
	gen := s.generation
	s.mu.Unlock()
	s.setState(StateRunning)
	s.log.WithFields(map[string]interface{}{"generation": gen, "handoff_seconds": s.clock().Sub(began).Seconds()}).Info("ready")
	return nil
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
			return fmt.Errorf("server: start: handoff deadline: %w", err)
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
		p.serve()
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
	err := up.Follow(ctx, func(c []stats.Sample) {
		s.reg.AddCounters(c)
		signal()
	})
	s.mu.Lock()
	pid := s.drainingPID
	s.drainingPID = 0
	s.mu.Unlock()
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
